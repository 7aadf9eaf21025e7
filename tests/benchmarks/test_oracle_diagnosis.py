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


def test_closest_block_names_the_block_best_step_and_the_agent_there():
    """The trace's record of how close the block came: the step of its smallest distance, the agent's distance
    there, and the steps on which the block alone met the tolerances (20 px, pi/9)."""
    goal = np.array([200.0, 200.0, 300.0, 300.0, 1.0, 0.0, 0.0])
    states = np.tile(goal, (5, 1))
    states[:, 2] += [60, 30, 10, 19, 25]  # block px off
    states[:, 0] += [10, 20, 117, 40, 5]  # agent px off
    states[3, 4] += 0.4  # 19 px off but turned past pi/9: not placed
    rec = oracle_diagnosis._closest_block(states, goal)
    assert rec == {"closest_block_px": 10.0, "closest_block_agent_px": 117.0, "closest_block_step": 2,
                   "block_placed_steps": 1}
