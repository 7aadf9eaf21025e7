"""cjepa.data.samples: the one clip-reading core (meta -> decode -> masks) and the skip counting the loaders share."""

import logging

import numpy as np
import pytest
import torch

from cjepa.data.samples import BadSample, ClipLoaderBase, SkipLog, decode_sample, sample_meta
from cjepa.data.shards import decode_masks
from cjepa.data.video import decode_frames, preprocess_frames, resize_masks
from tests.data.test_loader import KEYS, raw_sample


def world_raw(world_shards, key=KEYS[1]):
    return {"__key__": key, "__url__": "shard.tar", **raw_sample(world_shards / "train", key)}


def test_clips_sharing_frames_decode_like_separate_clips(world_shards):
    """Overlapping clips are decoded once and cut apart: each equals the reference decode of its own frames."""
    raw = world_raw(world_shards)
    clips = [np.arange(0, 9, 2), np.arange(4, 13, 2)]
    out = decode_sample(raw, clips, image_size=(16, 24), with_masks=True)
    assert [o["key"] for o in out] == [KEYS[1]] * 2
    for o, idx in zip(out, clips):
        assert o["frame_index"].tolist() == idx.tolist() and o["masks"].shape == (5, 16, 24)
        torch.testing.assert_close(o["frames"], preprocess_frames(decode_frames(raw["mp4"], idx), (16, 24)))
        np.testing.assert_array_equal(o["masks"].numpy(), resize_masks(decode_masks(raw["masks.npz"], idx), (16, 24)))


def test_each_defect_has_one_reason(world_shards):
    """Missing json / mp4 / masks, a meta without a field and an undecodable mp4 map to their counter reasons."""
    raw = world_raw(world_shards)
    cases = {
        "missing_component": [{k: v for k, v in raw.items() if k != "json"},
                              {k: v for k, v in raw.items() if k != "mp4"},
                              {k: v for k, v in raw.items() if k != "masks.npz"}],
        "bad_meta": [{**raw, "json": b'{"key": "x"}'}],
        "bad_video": [{**raw, "mp4": b"\x00garbage" * 40}],
        "bad_masks": [{**raw, "masks.npz": b"not a zip"}],
    }
    for reason, raws in cases.items():
        for r in raws:
            with pytest.raises(BadSample) as err:
                decode_sample(r, [np.arange(3)], with_masks=True)
            assert err.value.reason == reason, (reason, sorted(r))
    assert sample_meta(raw)["num_frames"] == 20


def test_skip_log_counts_every_time_and_logs_once(caplog):
    log = SkipLog()
    with caplog.at_level(logging.WARNING, logger="cjepa.data"):
        for _ in range(3):
            log.count_bad("a.tar", "k1", "bad_video", "broken")
        log.count_bad("a.tar", "k2", "truncated_shard", "cut", 4)
    assert dict(log.skipped) == {"bad_video": 3, "truncated_shard": 4} and log.skipped_total == 7
    assert len(log.bad_samples) == 4
    assert len([r for r in caplog.records if "skipped sample" in r.getMessage()]) == 2


def test_loader_base_checks_the_saved_layout(caplog):
    class Loader(ClipLoaderBase):
        def __init__(self):
            super().__init__()
            self.layout, self.batches_per_epoch, self.closed = [2, 4], 5, False

        def close(self):
            self.closed = True

    with Loader() as loader:
        assert len(loader) == 5 and loader.same_layout({"layout": [2, 4]}, 1)
        with caplog.at_level(logging.WARNING, logger="cjepa.data"):
            assert not loader.same_layout({"layout": [1, 4]}, 3)
        assert "restarting the data stream at pass 3" in caplog.text
    assert loader.closed
