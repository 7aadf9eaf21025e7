"""Counterfactual rollouts remove exactly the queried object's slot and nothing else; factual rollouts; loading."""

import json

import numpy as np
import pytest
import torch

from cjepa.data.slot_store import SlotSplit, SlotStoreError
from cjepa.eval.rollout import rollout_interleaved
from cjepa.eval.vqa.questions import build_question_set, iter_answers, iter_texts, resolve_removed_objects
from cjepa.eval.vqa.rollouts import (
    cf_key,
    counterfactual_rollout,
    counterfactuals_for_split,
    drop_slot,
    object_ids_reader,
    plan_counterfactuals,
    restore_slot,
    write_factual_rollouts,
)
from cjepa.eval.vqa.text import Vocab
from cjepa.models.predictor import MaskedSlotPredictor
from tests.eval.vqa.helpers import mc, scene, write_json, write_store

T, S, D = 20, 4, 8
OBJECTS = [{"object_id": 0, "color": "gray", "material": "metal", "shape": "cube"},
           {"object_id": 1, "color": "red", "material": "rubber", "shape": "sphere"},
           {"object_id": 2, "color": "blue", "material": "rubber", "shape": "cylinder", "mask_id": 7}]


class Spy(torch.nn.Module):
    """A real predictor that records every history it is asked to continue."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner = MaskedSlotPredictor(num_slots=S, slot_dim=D, history_frames=3, pred_frames=2, depth=1, heads=2,
                                         mlp_dim=16, dropout=0.0)
        self.history_frames, self.pred_frames = 3, 2
        self.calls = []

    def inference(self, history):
        self.calls.append(history.clone())
        return self.inner.inference(history)


def world(tmp_path):
    """Video A: object 0 in slot 0, red object 1 in slot 2 from frame 0, blue object 2 enters in slot 3 at frame 9.
    `object_ids` holds instance ids: object_id + 1, or the table's mask_id (7 for the blue cylinder)."""
    rng = np.random.default_rng(0)
    slots = rng.normal(size=(T, S, D)).astype(np.float32)
    ids = np.full((T, S), -1)
    ids[:, 0], ids[:, 2], ids[9:, 3] = 1, 2, 7
    write_store(tmp_path / "obs", "val", {"video_00000.mp4": slots},
                object_ids={"video_00000.mp4": ids.astype(np.float32)})
    scenes = [scene(0, [
        mc(0, "counterfactual", "Which of the following will happen if the red sphere is removed?",
           ["correct", "wrong"]),
        mc(1, "counterfactual", "Without the blue cylinder, what will happen?", ["wrong"]),
        mc(2, "counterfactual", "Which of the following will happen if the red sphere is removed?", ["wrong"]),
        mc(3, "counterfactual", "Which of the following will happen if the gray cube is removed?", ["wrong"]),
    ])]
    q = write_json(tmp_path / "q.json", scenes)
    a = write_json(tmp_path / "ann.json", [{"scene_index": 0, "object_property": OBJECTS}])
    return slots, ids, scenes, q, a


def test_drop_and_restore_are_inverse_up_to_the_removed_slot():
    x = torch.randn(3, 5, S, D)
    removed = torch.tensor([0, 2, 3])
    kept = drop_slot(x, removed)
    assert kept.shape == (3, 5, S - 1, D)
    torch.testing.assert_close(kept[1], x[1][:, [0, 1, 3]])
    back, present = restore_slot(kept, removed)
    for b, r in enumerate(removed.tolist()):
        assert (back[b, :, r] == 0).all() and (present[b, :, r] == 0).all()
        others = [s for s in range(S) if s != r]
        torch.testing.assert_close(back[b][:, others], x[b][:, others])
        assert (present[b][:, others] == 1).all()


def test_plan_finds_the_slot_of_the_named_object_and_the_branch_frame(tmp_path):
    slots, ids, scenes, q, a = world(tmp_path)
    qs = build_question_set(scenes, Vocab.build(iter_texts(scenes), iter_answers(scenes)), 20, 12)
    resolve_removed_objects(qs, {0: OBJECTS})
    videos = SlotSplit(tmp_path / "obs", "val")
    reqs, stats = plan_counterfactuals(qs, ["video_00000.mp4"] * 4, object_ids_reader(videos), min_branch=6)
    by_obj = {r.object_id: r for r in reqs}
    assert by_obj[1].slot == 2 and by_obj[1].branch_frame == 6  # present from frame 0: branch at a full history
    assert by_obj[2].slot == 3 and by_obj[2].branch_frame == 9  # enters at 9: branch at its first appearance
    assert by_obj[0].slot == 0 and len(reqs) == 3  # the two questions removing the red sphere share one video
    assert stats["planned"] == 4 and stats["questions"] == 4


def test_counterfactual_rollout_drops_exactly_that_slot(tmp_path):
    """The predictor only ever sees the S-1 other slots; observed frames before the branch are unchanged; the
    result equals rolling out the other slots by hand; the removed slot is zero and marked absent."""
    slots, *_ = world(tmp_path)
    spy = Spy()
    x = torch.from_numpy(slots)[None]
    cf, present = counterfactual_rollout(spy, x, torch.tensor([2]), branch_frame=6, out_frames=16, frameskip=2)
    assert cf.shape == (1, 16, S, D) and present.shape == (1, 16, S)
    assert all(c.shape[2] == S - 1 for c in spy.calls)
    others = [0, 1, 3]
    torch.testing.assert_close(spy.calls[0][0],
                               x[0][[0, 2, 4]][:, others])  # chain 0 history: frames 0, 2, 4 without slot 2
    torch.testing.assert_close(cf[0, :6][:, others], x[0, :6][:, others])
    assert (cf[0, :, 2] == 0).all() and (present[0, :, 2] == 0).all() and (present[0][:, others] == 1).all()
    manual = rollout_interleaved(spy, x[:, :6][:, :, others], 16, 2)
    torch.testing.assert_close(cf[0][:, others], manual[0])
    assert not torch.allclose(cf[0, 6:][:, others], x[0, 6:16][:, others])  # frames after the branch are predicted


def test_store_for_a_split_and_its_record(tmp_path):
    """counterfactuals_for_split writes one video per (video, object) with a `present` extra and a JSON record."""
    slots, ids, scenes, q, a = world(tmp_path)
    spy = Spy()
    stats = counterfactuals_for_split(spy, source="store", path=str(tmp_path / "obs"), split="val", questions=q,
                                      annotations=a,
                                      out=tmp_path / "cf", cf_frames=16, frameskip=2, batch_size=8,
                                      device=torch.device("cpu"))
    assert stats["videos"] == 3 and stats["videos_new"] == 3 and stats["resolution"] == {"resolved": 4}
    store = SlotSplit(tmp_path / "cf", "val")
    key = cf_key("video_00000.mp4", 2)
    assert set(store) == {cf_key("video_00000.mp4", k) for k in range(3)}
    v, p = np.asarray(store[key]), np.asarray(store.extra(key, "present"))
    assert v.shape == (16, S, D) and (v[:, 3] == 0).all() and (p[:, 3] == 0).all() and (p[:, :3] == 1).all()
    np.testing.assert_array_equal(v[:9, :3], slots[:9, :3])  # before the blue cylinder enters: the observed frames
    record = json.loads((tmp_path / "cf" / "val" / "counterfactuals.json").read_text())
    assert {(r["object_id"], r["slot"],
             r["branch_frame"]) for r in record["requests"]} == {(0, 0, 6), (1, 2, 6), (2, 3, 9)}
    again = counterfactuals_for_split(spy, source="store", path=str(tmp_path / "obs"), split="val", questions=q,
                                      annotations=a,
                                      out=tmp_path / "cf", cf_frames=16, frameskip=2, batch_size=8,
                                      device=torch.device("cpu"))
    assert again["videos_new"] == 0  # resumable


def test_objects_not_in_any_slot_are_counted_and_slots_without_ids_are_an_error(tmp_path):
    slots, ids, scenes, q, a = world(tmp_path)
    qs = build_question_set(scenes, Vocab.build(iter_texts(scenes), iter_answers(scenes)), 20, 12)
    qs.removed_object[:] = [1, 5, -1, 0]
    qs.removed_instance[:] = [2, 6, -1, 1]
    reqs, stats = plan_counterfactuals(qs, ["video_00000.mp4"] * 4,
                                       object_ids_reader(SlotSplit(tmp_path / "obs", "val")), 6)
    assert stats["object never bound to a slot"] == 1 and stats["removed object unresolved"] == 1 and len(reqs) == 2
    write_store(tmp_path / "plain", "val", {"video_00000.mp4": slots})
    with pytest.raises(SlotStoreError, match="per-slot object ids"):
        object_ids_reader(SlotSplit(tmp_path / "plain", "val"))("video_00000.mp4")
    with pytest.raises(SlotStoreError, match="pickle has none"):
        object_ids_reader({"video_00000.mp4": slots})


def test_factual_rollout_store_is_resumable(tmp_path):
    slots, *_ = world(tmp_path)
    spy = Spy()
    videos = SlotSplit(tmp_path / "obs", "val")
    n = write_factual_rollouts(spy, videos, tmp_path / "roll", "val", obs_frames=16, target_frames=20, frameskip=2,
                               batch_size=4,
                               device=torch.device("cpu"))
    out = np.asarray(SlotSplit(tmp_path / "roll", "val")["video_00000.mp4"])
    assert n == 1 and out.shape == (20, S, D)
    np.testing.assert_array_equal(out[:16], slots[:16])
    assert write_factual_rollouts(spy, videos, tmp_path / "roll", "val", obs_frames=16, target_frames=20, frameskip=2,
                                  batch_size=4,
                                  device=torch.device("cpu")) == 0
