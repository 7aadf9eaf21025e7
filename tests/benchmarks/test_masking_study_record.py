"""benchmarks/masking_study_record.py: a finished study becomes result rows (table lines + one study record)."""

import json
from pathlib import Path

import pytest

from benchmarks import masking_study_record
from cjepa.config import load_config
from cjepa.eval.masking_study import collect, study_root


def _cell(root: Path, masked: int, seed: int, cf_q: float, reasoner: Path) -> None:
    cell = root / f"num_masked{masked}_seed{seed}"
    (cell / "rollout").mkdir(parents=True)
    (cell / "rollout" / "meta.json").write_text("{}")
    metrics = {"overall": 0.5, "descriptive": 0.6, "explanatory_per_question": 0.5, "predictive_per_question": 0.4,
               "counterfactual_per_option": 0.6, "counterfactual_per_question": cf_q}
    (cell / "results.json").write_text(json.dumps({
        "cell": cell.name, "predictor_run": str(root / "pred" / cell.name), "reasoner": str(reasoner),
        "predictor": {"val/loss_future": 0.07, "rollout_mse": [0.1, 0.2], "baseline_mse": [0.2, 0.4]},
        "probe": {"ratio": 1.1}, "vqa": {"original": {"metrics": metrics}},
    }))


def test_a_finished_study_becomes_table_rows_and_one_study_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reasoner = tmp_path / "reasoner"
    reasoner.mkdir()
    (reasoner / "summary.json").write_text(json.dumps({"final_eval": {"metrics": {"descriptive": 0.65}}}))
    cfg = load_config([], [f"run.out_dir={tmp_path}", "study.name=s", "study.protocols=[original]",
                           'study.grid=["masking.num_masked=0,2", "run.seed=0,1"]'])
    root = study_root(cfg)
    for seed, (m0, m2) in enumerate([(0.30, 0.40), (0.36, 0.42)]):
        _cell(root, 0, seed, m0, reasoner)
        _cell(root, 2, seed, m2, reasoner)
    collect(cfg)
    out = tmp_path / "rows.jsonl"
    assert masking_study_record.main([str(root), "--config", "cfg.yaml", "--out", str(out), "--note", "n"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    study = [r for r in rows if r["kind"] == "study"]
    table = {r["x_value"]: r for r in rows if r["kind"] == "row"}
    assert len(study) == 1 and set(table) == {"0", "2"}
    for r in rows:
        assert r["git_sha"] and r["machine"] and r["date"] and r["note"] == "n" and r["benchmark"] == "masking_study"
    two = table["2"]
    assert two["protocol"] == "original" and two["x"] == "masking.num_masked" and two["replicates"] == 2
    assert two["mean"]["counterfactual_per_question"] == pytest.approx(0.41)
    assert two["ci95"]["counterfactual_per_question"] == pytest.approx(12.706204736 * 0.01)  # sd 0.01414 / sqrt 2
    assert two["counterfactual_gain"] == pytest.approx(0.08)  # paired by seed: 0.10 and 0.06
    s = study[0]
    assert s["cells"] == 4 and s["reasoner"] == "reasoner" and s["reasoner_oracle_metrics"] == {"descriptive": 0.65}
    assert s["per_cell"]["num_masked2_seed1"]["copy_last_mse"] == [0.2, 0.4]
    assert s["per_cell"]["num_masked0_seed0"]["predictor_run"] == "s/pred/num_masked0_seed0"  # relative, no host path
    assert s["cells_wall_s"] is not None and s["cells_wall_s"] >= 0
    assert (tmp_path / "masking_study").is_dir() and list((tmp_path / "masking_study").glob("s_*.png"))


def test_an_unfinished_study_is_refused(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert masking_study_record.main([str(tmp_path), "--config", "c.yaml", "--out", str(out)]) == 2
    assert "no study_results.json" in capsys.readouterr().err
    cfg = load_config([], [f"run.out_dir={tmp_path}", "study.name=s", "study.protocols=[original]",
                           'study.grid=["masking.num_masked=0,2", "run.seed=0"]'])
    _cell(study_root(cfg), 0, 0, 0.3, tmp_path)
    collect(cfg)  # num_masked2 has no results yet
    assert masking_study_record.main([str(study_root(cfg)), "--config", "c.yaml", "--out", str(out)]) == 2
    assert "cells not finished: num_masked2" in capsys.readouterr().err and not out.exists()
