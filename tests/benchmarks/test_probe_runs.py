"""benchmarks/probe_runs.py: one provenance row per probed model, and its plots."""

import json

from benchmarks.probe_runs import main as probe_runs
from cjepa.cli import main
from tests.commands.test_probe import TINY


def test_probe_runs_appends_a_row_with_provenance(tmp_path, capsys):
    assert main(["train", "-c", "world/demo_slots.yaml", f"run.out_dir={tmp_path}", "run.name=p", "--no-progress",
                 *TINY]) == 0
    out = tmp_path / "rows.jsonl"
    assert probe_runs([f"tiny={tmp_path / 'p'}", "--root", str(tmp_path / "probe"), "--out", str(out), "--plots",
                       str(tmp_path / "png"),
                       "--note", "test", "--probe-args", "--window", "0"]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    probe = json.loads((tmp_path / "probe" / "tiny" / "probe.json").read_text())
    assert row["ratio"] == probe["ratio"] and row["events"] == probe["events"] and row["query_steps"] == [2]
    assert row["git"]["sha"] and row["date"] and row["command"] == "cjepa probe --checkpoint RUN_DIR --window 0"
    assert row["masking"]["num_masked"] == 1 and row["train_steps"] == 4
    assert (tmp_path / "png" / "tiny_curve.png").is_file() and (tmp_path / "png" / "tiny_example.png").is_file()
    assert "tiny" in capsys.readouterr().out
