"""planner_seeds.py: joining split episodes records per model, and the spread over models, on hand-made records."""

import json

import pytest

from benchmarks.planner_seeds import PROTOCOL, combine_model, compare, main, model_records, summarise


def record(model, indices, solved, *, precision="bf16", ensemble=(), sha="abc", **setting):
    """An episodes record of ``planner_diagnosis.py`` as it is written, reduced to the fields read here."""
    per_episode = [{"index": i, "success": i in solved, "category": "success" if i in solved else "block_off_goal",
                    "plans": [{"outcome": "reached" if i in solved else "planning"}]} for i in indices]
    return {"kind": "episodes", "checkpoint_name": model, "ensemble": list(ensemble), "git_sha": sha,
            **PROTOCOL, "precision": precision, **setting, "per_episode": per_episode, "wall_seconds": 10.0}


def test_split_records_join_into_one_model():
    recs = [record("a", range(0, 3), {0, 2}), record("a", range(3, 5), {4}, sha="def")]
    row = combine_model(recs, "a", 5)
    assert (row["solved"], row["success_rate"], row["solved_pairs"]) == (3, 60.0, [0, 2, 4])
    assert row["categories"] == {"success": 3, "block_off_goal": 2}
    assert row["plan_outcomes"] == {"reached": 3, "planning": 2}
    assert row["record_shas"] == ["abc", "def"]
    # the first 3 pairs only: pairs beyond are left out, of the counts too
    row3 = combine_model(recs, "a", 3)
    assert (row3["solved"], row3["plan_outcomes"]) == (2, {"reached": 2, "planning": 1})


def test_overlap_missing_pairs_and_mixed_settings_are_errors():
    with pytest.raises(ValueError, match=r"model 'a': drawn pairs \[2\] are in more than one record"):
        combine_model([record("a", range(0, 3), set()), record("a", range(2, 5), set())], "a", 5)
    with pytest.raises(ValueError, match=r"missing \[3, 4\]"):
        combine_model([record("a", range(0, 3), set())], "a", 5)
    with pytest.raises(ValueError, match="different settings"):
        combine_model([record("a", range(0, 3), set()), record("a", range(3, 5), set(), cem_iterations=10)], "a", 5)
    with pytest.raises(ValueError, match="no episodes records of model 'b'"):
        combine_model([], "b", 5)


def test_selection_keeps_the_protocol_setting_of_single_models():
    recs = [record("a", range(5), {1}), record("a", range(5), {1, 2}, precision="fp32"),
            record("a", range(5), {0}, ensemble=["x"]), record("a", range(5), {0}, cem_iterations=10),
            record("b", range(5), {0})]
    chosen = model_records(recs, "a", {**PROTOCOL, "precision": "bf16"})
    assert chosen == [recs[0]]


def test_summary_over_three_models_on_fixed_numbers():
    """Rates 40, 50, 60 % on 10 pairs each: mean 50, t-interval +- 24.84 (t(0.975, 2) = 4.3027, sem 5.774);
    pooled 15/30 with Wilson 33.15-66.85 % (centre 0.5, half-width 1.96 sqrt(0.25/30 + 1.96^2/3600) / (1 +
    1.96^2/30) = 0.1685); pair 0 solved by all three, pairs 8 and 9 by none."""
    rows = [combine_model([record(m, range(10), set(solved))], m, 10)
            for m, solved in (("s0", {0, 1, 2, 3}), ("s1", {0, 1, 2, 4, 5}), ("s2", {0, 3, 4, 5, 6, 7}))]
    s = summarise(rows)
    assert s["rates"] == [40.0, 50.0, 60.0] and s["mean"] == pytest.approx(50.0)
    assert s["t95_half_width"] == pytest.approx(24.84, abs=0.01)
    assert (s["solved"], s["episodes"], s["pooled_rate"]) == (15, 30, 50.0)
    assert s["wilson95"] == pytest.approx([33.15, 66.85], abs=0.01)
    assert s["pairs_solved_by"] == {"0": 2, "1": 2, "2": 5, "3": 1}  # pairs 8, 9 | 6, 7 | 1-5 | 0
    assert sum(s["pairs_solved_by"].values()) == 10


def test_comparison_of_two_groups_on_fixed_numbers():
    """Rates 40, 50, 60 against 20, 30, 40 on the same 10 pairs: difference 20 +- 22.67 (Welch, 4 df, p = 0.0705;
    tests/utils/test_stats.py works it by hand). Per pair, the share of each group's models that solve it: the first
    group ahead on pairs 2-7, behind on 8 and 9, tied on 0 and 1; sign test 6 of 8: p = 2 (28 + 8 + 1) / 256 =
    0.2891."""
    first = [combine_model([record(m, range(10), set(solved))], m, 10)
             for m, solved in (("s0", {0, 1, 2, 3}), ("s1", {0, 1, 2, 4, 5}), ("s2", {0, 3, 4, 5, 6, 7}))]
    second = [combine_model([record(m, range(10), set(solved))], m, 10)
              for m, solved in (("t0", {0, 1}), ("t1", {0, 1, 8}), ("t2", {0, 2, 3, 9}))]
    c = compare(first, second)
    assert c["mean_difference"] == pytest.approx(20.0)
    assert c["welch95"] == pytest.approx([20.0 - 22.669, 20.0 + 22.669], abs=2e-3)
    assert c["welch_p"] == pytest.approx(0.0705, abs=5e-4)
    assert (c["pairs_better"], c["pairs_worse"], c["pairs_tied"]) == (6, 2, 2)
    assert c["sign_test_p"] == pytest.approx(74 / 256)
    assert compare(second, first)["pairs_better"] == 2
    with pytest.raises(ValueError, match="different numbers of pairs"):
        compare(first, [combine_model([record("u", range(5), {0})], "u", 5)])


def test_model_rows_carry_their_training_from_the_run_directory(tmp_path, capsys):
    """With --runs, each model row holds its run's seed, masked slots, steps, wall time, validation loss and
    rollout MSE; a model without a finished run directory is one line naming the missing file."""
    src = tmp_path / "episodes.jsonl"
    src.write_text(json.dumps(record("m1", range(4), {0})) + "\n")
    run = tmp_path / "runs" / "m1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("run: {seed: 7, name: m1}\nmasking: {num_masked: 1}\n")
    (run / "summary.json").write_text(json.dumps({"steps": 6000, "wall_time_s": 1400.5, "val/loss_future": 0.005,
                                                  "final_eval": {"mse": [0.1, 0.2]}}))
    out = tmp_path / "rows.jsonl"
    assert main(["--records", str(src), "--pairs", "4", "--models", "m1", "--runs", str(tmp_path / "runs"),
                 "--out", str(out)]) == 0
    model_row = json.loads(out.read_text().splitlines()[0])
    assert model_row["training"] == {"run_seed": 7, "num_masked": 1, "steps": 6000, "wall_time_s": 1400.5,
                                     "val_loss_future": 0.005, "rollout_mse": [0.1, 0.2]}
    (run / "summary.json").unlink()
    assert main(["--records", str(src), "--pairs", "4", "--models", "m1", "--runs", str(tmp_path / "runs")]) == 2
    assert "m1/summary.json is missing" in capsys.readouterr().err


def test_main_appends_model_and_summary_rows(tmp_path, capsys):
    src = tmp_path / "episodes.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in (
        record("s0", range(0, 2), {0}), record("s0", range(2, 4), {3}), record("s1", range(4), {0, 1, 2}),
        record("s0", range(4), {0, 1, 2, 3}, seed=1))))  # another evaluation seed: left out unless asked for
    out = tmp_path / "rows.jsonl"
    assert main(["--records", str(src), "--pairs", "4", "--precision", "bf16", "--models", "s0", "s1",
                 "--label", "wide", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["model", "model", "summary"]
    assert [r["solved"] for r in rows[:2]] == [2, 3] and rows[2]["pooled_rate"] == 62.5
    assert all(r["label"] == "wide" and "git_sha" in r for r in rows)
    assert "pooled 5/8 = 62.5 %" in capsys.readouterr().out
    assert main(["--records", str(src), "--pairs", "4", "--seed", "1", "--models", "s0"]) == 0
    assert "s0: 4/4" in capsys.readouterr().out
    src.write_text(src.read_text() + "".join(json.dumps(r) + "\n" for r in (
        record("s2", range(4), {0, 1}), record("s3", range(4), {0, 1, 2, 3}))))
    assert main(["--records", str(src), "--pairs", "4", "--models", "s0", "s3", "--against", "s1", "s2",
                 "--out", str(out)]) == 0
    assert "against s1, s2: +12.5 points" in capsys.readouterr().out  # 75 against 62.5
    assert json.loads(out.read_text().splitlines()[-1])["kind"] == "comparison"
    # a model without records: one line naming it, no rows written
    assert main(["--records", str(src), "--pairs", "4", "--models", "s0", "s9", "--out", str(out)]) == 2
    assert "model 's9'" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 7
