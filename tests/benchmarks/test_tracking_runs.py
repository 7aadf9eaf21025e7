"""benchmarks/tracking_runs.py: how long slots keep their objects, read from a slot store's object ids."""

import numpy as np

from benchmarks.tracking_runs import held_objects
from cjepa.data.slot_store import SlotStoreWriter


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
