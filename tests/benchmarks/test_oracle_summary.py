"""benchmarks/oracle_summary.py --combine: oracle records of one run split over processes become one row."""

import json

import pytest

from benchmarks import oracle_summary


def record(skip: int, successes: list[bool], seed: int = 0, sha: str = "a" * 40, cost: str = "state_path") -> dict:
    eps = [{"success": ok, "category": "success" if ok else "out_of_budget", "plan_seconds": 10.0} for ok in successes]
    return {"kind": "oracle", "git_sha": sha, "machine": "test", "date_utc": "2026-12-06T00:00:00+00:00",
            "argv": ["oracle", "--dataset", "data/pusht/slots", "--episodes", "50",
                                                       "--skip", str(skip)],
            "cost": cost, "proprio_weight": 1.0, "samples": 300, "topk": 30, "iterations": 30, "var_scale": 1.0,
            "goal_offset": 25, "seed": seed, "skip": skip, "per_episode": eps}


def test_split_records_join_per_seed_and_commit(tmp_path, capsys):
    recs = [record(0, [True, False]), record(2, [True] * 3), record(0, [True], seed=1),
            record(0, [False], sha="b" * 40)]
    rows = sorted(oracle_summary.combine(recs), key=lambda r: (r["git_sha"], r["seed"]))
    assert [(r["git_sha"], r["seed"], r["covered"], r["solved"], r["drawn"]) for r in rows] == [
        ("a" * 40, 0, 5, 4, 50), ("a" * 40, 1, 1, 1, 50), ("b" * 40, 0, 1, 0, 50)]
    assert rows[0]["categories"] == {"success": 4, "out_of_budget": 1}
    assert rows[0]["plan_seconds_per_episode"] == 10.0
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "combined.jsonl"
    assert oracle_summary.main(["--combine", str(path), "--out", str(out)]) == 0
    assert "4/5 solved (of 50 drawn)" in capsys.readouterr().out
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted((r["git_sha"], r["seed"], r["solved"], r["covered"]) for r in written) == [
        ("a" * 40, 0, 4, 5), ("a" * 40, 1, 1, 1), ("b" * 40, 0, 0, 1)]


def test_overlapping_ranges_are_an_error():
    with pytest.raises(ValueError, match="seed 0: drawn pairs \\[1\\] are in more than one record"):
        oracle_summary.combine([record(0, [True, True]), record(1, [True])])


def test_cost_weights_and_pair_indices_keep_runs_apart():
    """Records that differ only in the state cost's agent weight are different configurations; records that name
    their pairs' indices (oracle --pairs) are joined by those, not by --skip."""
    weighted = {**record(0, [True, True]), "agent_weight": 0.25, "cem_stream": "per_episode"}
    rows = oracle_summary.combine([record(0, [False, False]), weighted])
    assert sorted((r["agent_weight"], r["solved"]) for r in rows) == [(0.25, 2), (1.0, 0)]
    ranked = {**weighted, "success_first": True}
    assert len(oracle_summary.combine([weighted, ranked])) == 2  # the success-first ranking is another cost
    a = {**record(0, [True]), "per_episode": [{"index": 3, "success": True, "category": "success",
                                                "plan_seconds": 1.0}]}
    b = {**record(0, [False]), "per_episode": [{"index": 7, "success": False, "category": "block_off_goal",
                                                 "plan_seconds": 1.0}]}
    (row,) = oracle_summary.combine([a, b])
    assert (row["covered"], row["solved"]) == (2, 1)
    with pytest.raises(ValueError, match="seed 0: drawn pairs \\[3\\] are in more than one record"):
        oracle_summary.combine([a, a])
