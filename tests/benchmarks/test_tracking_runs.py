"""benchmarks/tracking_runs.py: how long slots keep their objects, read from a slot store's object ids."""

import json

import numpy as np
import pytest

from benchmarks.tracking_runs import held_objects, main
from cjepa.data.slot_store import SlotSplit, SlotStoreWriter


def test_held_objects_follows_each_first_frame_object_through_its_slot(tmp_path):
    """Video a: object 5 stays in slot 1; object 7 moves from slot 2 to slot 0 at frame 2. Video b: object 3 is in
    slot 2, then merged away (no slot holds it) at frame 1, then back in slot 2. Per frame: held by the frame-0
    slot / by any slot, over the three objects."""
    slots = np.zeros((3, 3, 4), dtype=np.float32)
    a = np.array([[-1, 5, 7], [-1, 5, 7], [7, 5, -1]], dtype=np.float32)
    b = np.array([[-1, -1, 3], [-1, -1, -1], [-1, -1, 3]], dtype=np.float32)
    with SlotStoreWriter(tmp_path, "val", num_slots=3, slot_dim=4) as w:
        w.add("a", slots, object_ids=a)
        w.add("b", slots, object_ids=b)
    held = held_objects(tmp_path)
    assert held["objects"] == 3
    assert np.allclose(held["held_first"], [1.0, 2 / 3, 2 / 3])
    assert np.allclose(held["held_any"], [1.0, 2 / 3, 1.0])


# A tiny arm: 2 encoder steps on 4 short videos of the demo world, 2 held-out videos.
TINY = ["train.max_steps=2", "data.batch_size=2", "encoder.data.val_videos=2", "encoder.data.val_batch_size=2",
        "world.num_frames=16", "world.future_frames=8", "encoder.savi.enc_channels=8", "encoder.savi.dec_channels=8",
        "train.val_every=2", "train.ckpt_every=2"]


@pytest.mark.slow
def test_eval_re_encodes_a_trained_arm_under_evaluation_overrides_into_its_own_store(tmp_path):
    """--eval trains nothing: it loads the arm's weights, re-encodes the held-out videos with the override (here the
    transition replaced by identity, so the slots after frame 0 differ while frame 0's are the same weights' own)
    into eval/<name>/slots, leaves the arm's store as it was, and appends a tracking_eval row."""
    rows, root = tmp_path / "rows.jsonl", tmp_path / "runs"
    enc = [x for o in TINY for x in ("--encoder", o)]
    common = ["--arm", "tiny", "--seeds", "0", "--root", str(root), "--out", str(rows)]
    assert main([*common, *enc, "--train-videos", "4", "--val-videos", "2"]) == 0
    arm = root / "tiny" / "s0"
    before = {k: SlotSplit(arm / "slots", "val")[k] for k in SlotSplit(arm / "slots", "val")}
    weights = sorted((arm / "encoder" / "checkpoints").iterdir())
    assert main([*common, *enc, "--eval", "encoder.savi.transition=identity", "--eval-name", "id"]) == 0
    assert sorted((arm / "encoder" / "checkpoints").iterdir()) == weights  # nothing trained
    after = SlotSplit(arm / "slots", "val")
    assert all(np.array_equal(after[k], v) for k, v in before.items())
    ident = SlotSplit(arm / "eval" / "id" / "slots", "val")
    assert sorted(ident) == sorted(before)
    for k, v in before.items():
        assert np.allclose(ident[k][0], v[0]) and not np.allclose(ident[k][1:], v[1:])
    row = [json.loads(line) for line in rows.read_text().splitlines()][-1]
    assert row["benchmark"] == "tracking_eval" and row["eval"] == "id"
    assert row["eval_overrides"] == ["encoder.savi.transition=identity"] and row["encoder_overrides"] == TINY
    assert len(row["held_first"]) == 16 and row["held_first"][0] == 1.0 and -1.0 <= row["video_fg_ari"] <= 1.0


def test_eval_of_an_untrained_arm_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no trained encoder"):
        main(["--arm", "none", "--seeds", "0", "--root", str(tmp_path), "--out", str(tmp_path / "rows.jsonl"),
              "--eval", "encoder.savi.iters_after_first=1"])
