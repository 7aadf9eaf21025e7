"""benchmarks/oracle_diagnosis.py on a tiny store: records carry provenance and what the pairs ask for; the
summary prints them; data.pusht.expert_max_step reaches the generated episodes."""

import json

import numpy as np

from benchmarks import oracle_diagnosis, oracle_summary
from cjepa.cli import main
from cjepa.plan.evaluate import load_expert_episodes


def test_displacement_record_and_summary(tmp_path, capsys):
    store = tmp_path / "pusht"
    assert main(["pusht", f"data.pusht.out={store}", "data.pusht.videos=false", "data.pusht.expert_train=0",
                 "data.pusht.random_train=0", "data.pusht.expert_val=2", "data.pusht.expert_max_step=30"]) == 0
    eps = load_expert_episodes(str(store / "slots"), "val")
    speed = np.concatenate([np.linalg.norm(np.diff(v[:, :2], axis=0), axis=1) for v in eps.values()])
    assert speed.max() < 30.0, "the expert's speed cap must reach the stored episodes"
    out = tmp_path / "d.jsonl"
    assert oracle_diagnosis.main(["displacement", "--dataset", str(store / "slots"), "--episodes", "3",
                                  "--seeds", "0", "--out", str(out)]) == 0
    rec = json.loads(out.read_text().splitlines()[-1])
    assert {"git_sha", "machine", "date_utc", "argv"} <= set(rec) and rec["episodes"] == 2
    rows = rec["all_rows"]
    assert rows["block_px"]["n"] == sum(len(v) - 25 for v in eps.values()) and rows["block_px"]["p90"] >= 0
    assert rec["seed0_pairs"]["agent_px"]["n"] == 3
    capsys.readouterr()
    assert oracle_summary.main([str(out)]) == 0  # displacement records are skipped by the table
    assert capsys.readouterr().out == ""
