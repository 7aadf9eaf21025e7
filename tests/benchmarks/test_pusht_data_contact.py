"""benchmarks/pusht_data_contact.py: block motion per step and per window, and the record per episode kind."""

import json

import numpy as np

from benchmarks import pusht_data_contact as pdc
from cjepa.data.pusht import StateSlotEmbedding, generate_branch_episode, write_state_slot_store


def _states(block_xy, angles):
    s = np.zeros((len(block_xy), 7))
    s[:, 2:4], s[:, 4] = block_xy, angles
    return s


def test_block_motion_by_hand():
    """Steps move the block when its centre or angle changes past the thresholds; windows measure start to end."""
    xy = np.array([[0, 0], [0, 0], [3, 4], [3, 4], [3, 4], [3, 4]], float)  # moves 5 px at step 1 only
    ang = np.array([0, 0, 0, 0, 0.1, 0.1])  # turns 0.1 rad at step 3
    m = pdc.block_motion(_states(xy, ang), window=2, stride=1, move_px=0.5, move_rad=0.005)
    assert m["moved"].tolist() == [False, True, False, True, False]
    assert m["disp"] == [5.0, 5.0, 0.0, 0.0] and m["any"] == [True, True, True, True]
    np.testing.assert_allclose(m["rot"], [0, 0, 0.1, 0.1])
    first = pdc.block_motion(_states(xy, ang), window=2, stride=1, move_px=0.5, move_rad=0.005, first_window=True)
    assert first["disp"] == [5.0]
    assert pdc.episode_kind("branch_normal_000012") == "branch_normal" and pdc.episode_kind("expert_000001") == "expert"


def test_record_per_kind(tmp_path):
    ep = generate_branch_episode("explore", 0, expert_count=1, steps=30, seed=0)
    write_state_slot_store([ep], tmp_path / "slots", "train", StateSlotEmbedding(8, 2))
    out = tmp_path / "rows.jsonl"
    assert pdc.main(["--dataset", str(tmp_path / "slots"), "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    k = rec["kinds"]["branch_explore"]
    assert list(rec["kinds"]) == ["branch_explore"] and k["episodes"] == 1 and k["steps"] == 30 and k["windows"] == 2
    moved = pdc.block_motion(ep.states, 25, 5, 0.5, 0.005)
    assert k["steps_block_moves"] == float(np.mean(moved["moved"]))
    assert rec["git_sha"] and rec["argv"][0] == "pusht_data_contact.py"
