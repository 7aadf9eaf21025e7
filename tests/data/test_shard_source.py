"""Contracts of the shard video source (encoder.data.source=shards): the clip-batch contract, deterministic order,
resume at any batch, whole videos in key order, bad samples skipped and counted."""

import shutil

import numpy as np
import pytest
import torch

from cjepa.config import load_config
from cjepa.data.loader import iter_videos
from cjepa.data.shard_source import ShardVideoSource
from cjepa.data.video_sources import open_video_source


def clips(src, **kw):
    args = dict(batch_size=2, clip_frames=3, frame_stride=2, seed=5, epoch=1)
    args.update(kw)
    return list(src.iter_clips(**args))


def test_clip_batches_follow_the_contract(world_shards):
    """frames float32 (B, T, 3, H, W) normalised, masks int16 (B, T, H, W), keys, frame_index at the stride."""
    src = ShardVideoSource(str(world_shards), "train", image_size=(24, 32))
    assert len(src) == 7 and src.keys() == sorted(src.keys()) and src.has_masks
    b = clips(src)[0]
    assert b["frames"].dtype == torch.float32 and b["frames"].shape == (2, 3, 3, 24, 32)
    assert b["masks"].dtype == torch.int16 and b["masks"].shape == (2, 3, 24, 32)
    assert len(b["keys"]) == 2 and (b["frame_index"][:, 1:] - b["frame_index"][:, :-1] == 2).all()
    assert b["frames"].abs().max() < 3.0  # ImageNet-normalised range


def test_order_is_deterministic_and_resumes_at_any_batch(world_shards):
    """Same (seed, epoch) -> same batches; start_batch=k yields the uninterrupted run's batches from k on;
    another epoch reorders; ranks split each global batch."""
    src = ShardVideoSource(str(world_shards), "train")
    a, b = clips(src), clips(src)
    assert [x["keys"] for x in a] == [x["keys"] for x in b]
    assert all(torch.equal(x["frames"], y["frames"]) for x, y in zip(a, b))
    later = clips(src, start_batch=1)
    assert [x["keys"] for x in later] == [x["keys"] for x in a[1:]]
    assert torch.equal(later[0]["frame_index"], a[1]["frame_index"])
    assert [x["keys"] for x in clips(src, epoch=2)] != [x["keys"] for x in a]
    r0, r1 = clips(src, rank=0, world_size=2, batch_size=1), clips(src, rank=1, world_size=2, batch_size=1)
    assert [x["keys"][0] for pair in zip(r0,
                                         r1) for x in pair] == [k for x in clips(src,
                                                                                 batch_size=2)[:3] for k in x["keys"]]


def test_whole_videos_match_the_extraction_reader(world_shards):
    """iter_videos gives every video in key order with the same frames as the loader's extraction path."""
    src = ShardVideoSource(str(world_shards), "train")
    items = list(src.iter_videos())
    assert [i.key for i in items] == src.keys()
    ref = next(iter_videos(str(world_shards / "train"), image_size=None))
    assert ref[0] == items[0].key and torch.equal(ref[1], items[0].frames) and torch.equal(ref[2], items[0].masks)
    assert items[0].meta["num_frames"] == items[0].frames.shape[0]
    skipped = list(src.iter_videos(skip=[items[0].key], rank=0, world_size=2))
    assert [i.key for i in skipped] == src.keys()[2::2]


def test_corrupt_video_is_skipped_and_counted(world_shards, tmp_path):
    """A corrupted mp4 drops that clip from its batch, is counted, and the rest keeps flowing."""
    root = tmp_path / "w"
    shutil.copytree(world_shards, root)
    src = ShardVideoSource(str(root), "train")
    victim = src.entries[0]
    off, size = victim.components["mp4"]
    with open(victim.shard.path, "r+b") as fh:
        fh.seek(off)
        fh.write(np.random.default_rng(0).integers(0, 255, size, dtype=np.uint8).tobytes())
    got = [k for b in clips(src, batch_size=7, shuffle=False) for k in b["keys"]]
    assert victim.key not in got and len(got) == 6
    assert sum(src.skipped.values()) == 1


def test_registry_opens_shards_from_the_encoder_config(world_shards):
    """encoder.data.source=shards opens this source; a missing split is FileNotFoundError."""
    cfg = load_config(overrides=["encoder.data.source=shards", f"encoder.data.path={world_shards}"])
    src = open_video_source(cfg.encoder.data, "train", (16, 16))
    assert isinstance(src, ShardVideoSource) and clips(src)[0]["frames"].shape[-2:] == (16, 16)
    with pytest.raises(FileNotFoundError):
        open_video_source(cfg.encoder.data, "test")
