"""benchmarks/pusht_pixels_record.py: finished encoder, predictor and planning runs become result rows."""

import json
from pathlib import Path

import pytest

from benchmarks import pusht_pixels_record


def _run(path: Path, **summary) -> Path:
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"steps": 10, "wall_time_s": 12.345, **summary}))
    return path


def _plan(folder: Path, rates: dict[str, float], encoder: str) -> Path:
    folder.mkdir(parents=True)
    eps = {seed: [{"key": f"expert_{i:06d}", "start": 3 * i, "success": i < 1, "category": "success" if i < 1
                   else "block_off_goal"} for i in range(2)] for seed in rates}
    (folder / "results.json").write_text(json.dumps({
        "config": {"plan": {"encoder": encoder, "seeds": [int(s) for s in rates], "episodes": 2, "workers": 2}},
        "zero_action_success": 0.0,
        "models": [{"name": "model", "checkpoint": "runs/m", "success_rate_per_seed": rates,
                    "success_rate_mean": sum(rates.values()) / len(rates), "success_rate_ci95": [10.0, 90.0],
                    "plan_seconds_median": 1.5, "episodes": eps}],
    }))
    return folder


def test_runs_become_rows_with_provenance(tmp_path):
    enc = _run(tmp_path / "enc", **{"val/fg_ari": 0.8, "val/mbo": 0.5, "val/loss": 0.01, "train/loss": 0.02})
    pred = _run(tmp_path / "pred", **{"val/loss_future": 0.03})
    plan = _plan(tmp_path / "plan", {"0": 50.0, "1": 100.0}, "pixels")
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 500, "val/loss": 0.03, "val/fg_ari": 0.1}, {"step": 550, "train/loss": 0.02},
        {"step": 1000, "val/loss": 0.02, "val/fg_ari": 0.2}, {"step": 1050, "train/loss": 0.01}]) + "\n")
    out = tmp_path / "rows.jsonl"
    assert pusht_pixels_record.main(["--encoder", f"cues={enc}", "--encoder", f"learned={stopped}", "--model",
                                     f"pixels={pred}", "--plan", f"pixels={plan}", "--out", str(out), "--note",
                                     "n"]) == 0
    enc_row, stopped_row, pred_row, plan_row = [json.loads(line) for line in out.read_text().splitlines()]
    assert stopped_row == {**stopped_row, "name": "learned", "finished": False, "steps": 1000, "val/fg_ari": 0.2}
    assert stopped_row["val_history"] == [{"step": 500, "val/loss": 0.03, "val/fg_ari": 0.1},
                                          {"step": 1000, "val/loss": 0.02, "val/fg_ari": 0.2}]
    assert enc_row["kind"] == "encoder" and enc_row["val/fg_ari"] == 0.8 and "train/loss" not in enc_row
    assert enc_row["finished"] is True
    assert enc_row["wall_time_s"] == 12.3 and enc_row["note"] == "n" and enc_row["git_sha"]
    assert pred_row == {**pred_row, "kind": "predictor", "name": "pixels", "val/loss_future": 0.03}
    assert plan_row["success_rate_per_seed"] == {"0": 50.0, "1": 100.0} and plan_row["success_rate_mean"] == 75.0
    assert plan_row["encoder"] == "pixels" and plan_row["categories"] == {"success": 2, "block_off_goal": 2}
    assert plan_row["pairs"]["1"] == [["expert_000000", 0], ["expert_000001", 3]]


def test_unfinished_runs_and_bad_names_are_refused(tmp_path):
    enc = _run(tmp_path / "enc")
    (tmp_path / "pred").mkdir()
    with pytest.raises(SystemExit, match="no summary.json"):
        pusht_pixels_record.main(["--encoder", f"e={enc}", "--model", f"p={tmp_path / 'pred'}"])
    with pytest.raises(SystemExit, match="no results.json"):
        pusht_pixels_record.main(["--encoder", f"e={enc}", "--plan", f"p={tmp_path / 'pred'}"])
    with pytest.raises(SystemExit, match="neither summary.json nor a validation row"):
        pusht_pixels_record.main(["--encoder", f"e={tmp_path / 'pred'}"])
    with pytest.raises(SystemExit, match="give NAME=PATH"):
        pusht_pixels_record.main(["--encoder", f"e={enc}", "--plan", str(tmp_path)])


def test_combined_rows_pool_the_seeds_of_one_model(tmp_path):
    from cjepa.utils.stats import mean_ci

    enc = _run(tmp_path / "enc")
    a = _plan(tmp_path / "a", {"0": 16.0}, "pixels")
    b = _plan(tmp_path / "b", {"1": 10.0, "2": 24.0}, "pixels")
    out = tmp_path / "rows.jsonl"
    assert pusht_pixels_record.main(["--encoder", f"e={enc}", "--plan", f"a={a}", "--plan", f"b={b}", "--combine",
                                     "all=a+b", "--out", str(out)]) == 0
    row = json.loads(out.read_text().splitlines()[-1])
    ci = mean_ci([16.0, 10.0, 24.0])
    assert row["kind"] == "plan_combined" and row["success_rate_per_seed"] == {"0": 16.0, "1": 10.0, "2": 24.0}
    assert row["success_rate_mean"] == pytest.approx(ci.mean)
    assert row["success_rate_ci95_half_width"] == pytest.approx(ci.half_width)
    with pytest.raises(SystemExit, match="evaluated twice"):
        pusht_pixels_record.main(["--encoder", f"e={enc}", "--plan", f"a={a}", "--plan", f"c={a}", "--combine",
                                  "x=a+c", "--out", str(out)])
    with pytest.raises(SystemExit, match="needs one plan row per name"):
        pusht_pixels_record.main(["--encoder", f"e={enc}", "--plan", f"a={a}", "--combine", "x=a+b", "--out",
                                  str(out)])
