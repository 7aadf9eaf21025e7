"""Which frames a question reads (both protocols), batching, and the resumable random start offsets."""

import numpy as np
import pytest
import torch

from cjepa.data.sampler import StepBatchSampler
from cjepa.data.slot_store import SlotSplit
from cjepa.eval.vqa.data import (
    OffsetBatchSampler,
    VQADataError,
    VQADataset,
    collate_questions,
    frame_indices,
    num_start_offsets,
    resolve_video_keys,
)
from cjepa.eval.vqa.questions import (
    COUNTERFACTUAL,
    DESCRIPTIVE,
    PREDICTIVE,
    build_question_set,
    iter_answers,
    iter_texts,
)
from cjepa.eval.vqa.text import Vocab
from tests.eval.vqa.helpers import desc, mc, scene, write_store


def test_clevrer_frame_windows():
    """25 frames 5 apart from start 0..7; predictive questions on 160-frame rollouts shift by 32 (Q22)."""
    assert num_start_offsets(128, 25) == 8
    assert frame_indices(3, 128, DESCRIPTIVE, 128, 25).tolist() == list(range(3, 124, 5))
    assert frame_indices(7, 160, COUNTERFACTUAL, 128, 25)[-1] == 127  # observed frames only
    pred = frame_indices(0, 160, PREDICTIVE, 128, 25)
    assert pred[0] == 32 and pred[-1] == 152 and (pred >= 128).sum() == 5
    assert (frame_indices(7, 160, PREDICTIVE, 128, 25) >= 128).sum() == 7  # 5-7 predicted frames (Q22)
    assert frame_indices(2, 128, PREDICTIVE, 128, 25)[0] == 2  # no rollout, no shift


def test_span_sampling_reaches_both_ends_of_the_video():
    """span: first and last observed frame, one start offset; predictive questions read the same spread shifted
    onto the last video_len frames (the simulated or rolled-out future)."""
    assert num_start_offsets(48, 16, "span") == 1
    idx = frame_indices(0, 48, DESCRIPTIVE, 48, 16, "span")
    assert idx[0] == 0 and idx[-1] == 47 and len(idx) == 16 and (np.diff(idx) >= 3).all() and (np.diff(idx) <= 4).all()
    assert frame_indices(0, 64, COUNTERFACTUAL, 48, 16, "span").tolist() == idx.tolist()
    assert frame_indices(0, 64, PREDICTIVE, 48, 16, "span").tolist() == (idx + 16).tolist()
    with pytest.raises(ValueError, match="not one of"):
        frame_indices(0, 48, DESCRIPTIVE, 48, 16, "random")


def test_video_keys_of_both_original_pickles():
    """video_XXXXX.mp4 (SAVi pickle / question files) and {i}_pixels.mp4 (VideoSAUR pickle) both resolve."""
    scenes = [scene(10003, [desc(0, "a", "1")]), scene(12, [desc(0, "a", "1")])]
    qs = build_question_set(scenes, Vocab.build(iter_texts(scenes), iter_answers(scenes)), 4, 2)
    assert resolve_video_keys(qs, {"10003_pixels.mp4", "video_00012.mp4"}) == ["10003_pixels.mp4", "video_00012.mp4"]
    assert resolve_video_keys(qs, {"other"}) == [None, None]


def make_dataset(tmp_path, T=20, cf=False):
    scenes = [scene(0, [desc(0, "how many", "2"), mc(1, "predictive", "what next", ["correct", "wrong"]),
                        mc(2, "counterfactual", "if the red object is removed", ["wrong", "correct", "wrong"])])]
    qs = build_question_set(scenes, Vocab.build(iter_texts(scenes), iter_answers(scenes)), 6, 4)
    video = np.arange(T * 3 * 2, dtype=np.float32).reshape(T, 3, 2)
    write_store(tmp_path / "slots", "val", {"video_00000.mp4": video})
    kw = {}
    if cf:
        cfv = -np.ones((16, 3, 2), np.float32)
        present = np.ones((16, 3), np.float32)
        present[:, 2] = 0
        write_store(tmp_path / "cf", "val", {"video_00000.mp4|remove:0": cfv},
                    present={"video_00000.mp4|remove:0": present})
        kw = dict(cf_videos=SlotSplit(tmp_path / "cf", "val"), cf_keys=[None, None, "video_00000.mp4|remove:0"])
    return VQADataset(qs, SlotSplit(tmp_path / "slots", "val"), ["video_00000.mp4"] * 3, video_len=16, num_frames=4,
                      **kw), video


def test_items_and_collate(tmp_path):
    """Items carry the sampled frames and the text rows; collate maps every row to its question's video."""
    ds, video = make_dataset(tmp_path)
    assert ds.num_starts == 4 and (ds.num_slots, ds.slot_dim) == (3, 2)
    it = ds[(0, 1)]
    np.testing.assert_array_equal(it["video"], video[[1, 5, 9, 13]])
    assert it["tokens"].shape == (1, 10) and not it["slot_pad"].any()
    np.testing.assert_array_equal(ds[(1, 1)]["video"], video[[5, 9, 13, 17]])  # predictive: shifted by 20 - 16
    b = collate_questions([ds[(0, 0)], ds[(2, 3)], ds[(1, 2)]])
    assert b["video"].shape == (3, 4, 3, 2) and b["tokens"].shape == (1 + 3 + 2, 10)
    assert b["row_video"].tolist() == [0, 1, 1, 1, 2, 2] and b["is_mc"].tolist() == [False] + [True] * 5
    assert b["label"].tolist()[1:] == [0, 1, 0, 1, 0]


def test_counterfactual_questions_read_the_counterfactual_video(tmp_path):
    """Protocol counterfactual_rollout: the CF question reads its object-removed video; the removed slot is padding."""
    ds, _ = make_dataset(tmp_path, cf=True)
    it = ds[(2, 0)]
    assert (it["video"] == -1).all()
    assert it["slot_pad"][:, 2].all() and not it["slot_pad"][:, :2].any()
    assert not ds[(0, 0)]["slot_pad"].any() and ds.cf_from_rollout == 1


def test_too_short_video_is_a_clear_error(tmp_path):
    ds, _ = make_dataset(tmp_path, T=14)
    with pytest.raises(VQADataError, match="has 14 frames; question 0 of scene 0"):
        ds[(0, 3)]


def test_offsets_are_seeded_per_epoch_and_survive_resume():
    """The offset of a question depends on (seed, epoch) only: a resumed sampler yields the same items."""
    def sampler(seed=1):
        return OffsetBatchSampler(StepBatchSampler(40, 8, seed=seed), num_starts=8, seed=seed)

    full = list(sampler())
    s = sampler()
    s.set_position(2)
    assert list(s) == full[2:]
    assert all(0 <= o < 8 for b in full for _, o in b)
    nxt = sampler()
    nxt.set_position(5)  # epoch 1
    assert list(nxt) != full and not torch.equal(sampler().epoch_offsets(0), sampler().epoch_offsets(1))
    assert not torch.equal(sampler(1).epoch_offsets(0), sampler(2).epoch_offsets(0))
