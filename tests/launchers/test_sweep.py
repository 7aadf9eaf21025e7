"""Sweep expansion (grid, zip, list files), validation before submission, --dry-run, and the summary table."""

from __future__ import annotations

import json

import pytest

from cjepa.cli import main
from cjepa.config import ConfigError
from launchers.sweep import expand, load_override_list, plan, split_values, summary_table
from tests.helpers import SMOKE


def test_split_values_keeps_brackets_and_quotes():
    """Commas inside lists, mappings or quotes belong to one value."""
    assert split_values('0,1,[0.9,0.95],{a: 1, b: 2},"x,y"') == ["0", "1", "[0.9,0.95]", "{a: 1, b: 2}", '"x,y"']
    with pytest.raises(ConfigError, match="unbalanced"):
        split_values("[1,2")


def test_grid_and_zip_expansion():
    """Several values make an axis; the grid is their product in order, --zip pairs them, singles go everywhere."""
    grid = expand(["masking.num_masked=0,1", "run.seed=0,1,2", "optim.lr=1e-3"])
    assert len(grid) == 6
    assert grid[0] == ["masking.num_masked=0", "run.seed=0", "optim.lr=1e-3"]
    assert grid[-1] == ["masking.num_masked=1", "run.seed=2", "optim.lr=1e-3"]
    assert expand(["a.b=1,2", "c.d=x,y", "e.f=z"],
                  zip_axes=True) == [["a.b=1", "c.d=x", "e.f=z"], ["a.b=2", "c.d=y", "e.f=z"]]
    with pytest.raises(ConfigError, match="same number"):
        expand(["a.b=1,2", "c.d=x,y,z"], zip_axes=True)
    with pytest.raises(ConfigError, match="twice"):
        expand(["a.b=1", "a.b=2"])
    with pytest.raises(ConfigError, match="cannot be swept"):
        expand(["launch.nodes=1,2"])


def test_override_list_file(tmp_path):
    """A YAML list of mappings or of key=value lists gives one override set per item."""
    f = tmp_path / "sweep.yaml"
    f.write_text("- {optim.lr: 0.001, optim.betas: [0.9, 0.95]}\n- [masking.num_masked=3]\n")
    assert load_override_list(str(f)) == [["optim.lr=0.001", "optim.betas=[0.9, 0.95]"], ["masking.num_masked=3"]]
    f.write_text("- 3\n")
    with pytest.raises(ConfigError, match="item 0"):
        load_override_list(str(f))


def test_plan_validates_every_job_before_submitting(tmp_path):
    """Every job's config is resolved and validated, including the batch split over the job's ranks; run dirs
    are named by index and swept values."""
    jobs = plan([SMOKE], ["masking.num_masked=1,2", "run.seed=0,1", f"run.out_dir={tmp_path}"], name="s")
    assert [j.cfg.masking.num_masked for j in jobs] == [1, 1, 2, 2] and [j.cfg.run.seed for j in jobs] == [0, 1, 0, 1]
    assert jobs[3].run_dir == tmp_path / "s" / "003_num_masked=2_seed=1"
    assert jobs[0].overrides == ["masking.num_masked=1", "run.seed=0"]
    with pytest.raises(ConfigError, match="sweep job 1 .*cannot mask 9"):
        plan([SMOKE], ["masking.num_masked=1,9", f"run.out_dir={tmp_path}"], name="s")
    with pytest.raises(ConfigError, match="divisible"):  # 8 samples cannot split over 3 ranks
        plan([SMOKE], ["run.seed=0,1", "launch.tasks_per_node=3", f"run.out_dir={tmp_path}"], name="s")


def test_dry_run_lists_valid_configs_and_submits_nothing(tmp_path, capsys):
    """`cjepa sweep --dry-run` prints each job's overrides and run dir (and full configs on request), no files."""
    rc = main(["sweep", "-c", SMOKE, "masking.num_masked=0,1,2,3,4", "run.seed=0,1,2", f"run.out_dir={tmp_path}",
               "--name", "grid", "--dry-run", "--show-config"])
    out = capsys.readouterr().out
    assert rc == 0 and "15 jobs" in out and "014_num_masked=4_seed=2" in out and "nothing submitted" in out
    assert out.count("# ---- job") == 15 and "num_masked: 4" in out
    assert not (tmp_path / "grid").exists()


def test_dry_run_refuses_an_unknown_cluster(tmp_path, capsys):
    """--dry-run checks the cluster preset as a real sweep does: an unknown one is rc 2, one line naming it."""
    rc = main(["sweep", "-c", SMOKE, "run.seed=0,1", f"run.out_dir={tmp_path}", "--name", "g", "--dry-run", "--cluster",
               "nope"])
    captured = capsys.readouterr()
    assert rc == 2 and "nothing submitted" not in captured.out
    assert len(captured.err.strip().splitlines()) == 1 and "launch.cluster='nope' is not a preset" in captured.err


def _finished_sweep(tmp_path):
    """A sweep folder with two jobs (num_masked 1 and 2, one optimizer) of which the first has finished."""
    runs = [tmp_path / "s" / "000_num_masked=1", tmp_path / "s" / "001_num_masked=2"]
    runs[0].mkdir(parents=True)
    (runs[0] / "summary.json").write_text(json.dumps({"steps": 12, "train/loss": 0.5, "val/loss_future": 0.25,
                                                      "final_eval": {"mse": [1.0, 3.0]}, "wall_time_s": 2.0}))
    (tmp_path / "s" / "sweep.json").write_text(json.dumps({"jobs": [
        {"index": i, "overrides": [f"masking.num_masked={i + 1}", "optim.name=adamw"], "run_dir": str(r),
         "job_id": f"7_{i}"} for i, r in enumerate(runs)]}))
    return runs


def test_summary_table_from_disk(tmp_path):
    """--summary rebuilds the table from sweep.json and the run dirs' summary.json; missing runs are flagged."""
    _finished_sweep(tmp_path)
    text, missing = summary_table(tmp_path / "s")
    assert missing == 1
    row0 = next(line for line in text.splitlines() if line.startswith("0 "))
    assert "COMPLETED" in row0 and "0.2500" in row0 and "2.0000" in row0  # rollout mse is the mean over steps
    assert "no summary" in text


def test_summary_writes_the_table_as_csv_and_hparams_sessions(tmp_path, capsys):
    """`cjepa sweep --summary DIR --csv FILE`: the CSV has the printed table's columns and cells (numbers at full
    precision); each finished job gets one HParams session (swept values, final metrics) that printing the table
    again rewrites instead of duplicating; a folder without sweep.json is one clear line."""
    import csv
    import re

    from cjepa.utils.report import table
    from launchers.sweep import SUMMARY_HEADERS
    from tests.tensorboard_helpers import hparams_session

    runs = _finished_sweep(tmp_path)
    for _ in range(2):  # rc 1: one job has no summary yet
        assert main(["sweep", "--summary", str(tmp_path / "s"), "--csv", str(tmp_path / "t.csv")]) == 1
    printed = capsys.readouterr().out
    with open(tmp_path / "t.csv", newline="") as fh:
        header, *rows = list(csv.reader(fh))

    def cell(text: str):  # a CSV cell back to the value the table formats (job ids like 7_0 stay text)
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        return float(text) if re.fullmatch(r"-?\d+\.\d*(e-?\d+)?", text) else text

    assert header == SUMMARY_HEADERS and table([[cell(c) for c in r] for r in rows], header) in printed
    assert rows[0][:4] == ["0", "masking.num_masked=1 optim.name=adamw", "7_0", "COMPLETED"]
    assert rows[0][4:] == ["12", "0.5", "0.25", "2.0", "2.0"] and rows[1][3].startswith("no summary")
    hp = runs[0] / "tb" / "hparams"
    assert len(list(hp.glob("events.out.tfevents.*"))) == 1 and not (runs[1] / "tb").exists()
    hparams, values, names = hparams_session(hp)
    assert hparams == {"masking.num_masked": 1.0, "optim.name": "adamw"}
    assert values == {"final/steps": 12.0, "final/train/loss": 0.5, "final/val/loss_future": 0.25,
                      "final/rollout_mse": 2.0, "final/wall_time_s": 2.0} and sorted(names) == sorted(values)
    assert main(["sweep", "--summary", str(tmp_path)]) == 2
    assert f"--summary {tmp_path}: no sweep.json there" in capsys.readouterr().err
