"""Video sources for the encoders (cjepa/data/clips.py)."""

import numpy as np
import pytest
import torch

from cjepa.config import load_config
from cjepa.data.clips import InMemoryVideos, VideoSourceUnavailable
from cjepa.data.video import preprocess_frames
from cjepa.data.video_sources import open_video_source, register_video_source
from cjepa.utils.image import IMAGENET_MEAN, IMAGENET_STD


def _videos(n=5, T=12, size=8, masks=True):
    rng = np.random.default_rng(0)
    out = {}
    for i in range(n):
        v = {
            "frames": rng.integers(0, 256, (T, size, size, 3), dtype=np.uint8),
            "meta": {"proprio": np.arange(T * 4, dtype=np.float32).reshape(T, 4)},
        }
        if masks:
            v["masks"] = rng.integers(0, 3, (T, size, size))
        out[f"v{i}"] = v
    return out


def test_frames_are_imagenet_normalised_and_laid_out_tchw():
    """uint8 (T, H, W, 3) -> float32 (T, 3, H, W) = (x / 255 - mean) / std."""
    x = np.zeros((1, 2, 2, 3), np.uint8)
    x[..., 0] = 255
    f = preprocess_frames(x)
    assert f.shape == (1, 3, 2, 2) and f.dtype == torch.float32
    assert torch.allclose(f[0, 0], torch.full((2, 2), (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))
    assert torch.allclose(f[0, 1], torch.full((2, 2), -IMAGENET_MEAN[1] / IMAGENET_STD[1]))


def test_clip_batches_follow_the_contract():
    """Clip batches: frames (B, T, 3, H, W) float32, masks (B, T, H, W) int16, keys, frame_index (B, T) at the
    stride."""
    src = InMemoryVideos(_videos())
    b = next(src.iter_clips(batch_size=2, clip_frames=3, frame_stride=2, seed=1))
    assert b["frames"].shape == (2, 3, 3, 8, 8) and b["frames"].dtype == torch.float32
    assert b["masks"].shape == (2, 3, 8, 8) and b["masks"].dtype == torch.int16
    assert len(b["keys"]) == 2 and b["frame_index"].dtype == torch.int64
    assert ((b["frame_index"][:, 1:] - b["frame_index"][:, :-1]) == 2).all()
    k = b["keys"][0]
    idx = b["frame_index"][0]
    assert torch.equal(b["frames"][0], preprocess_frames(_videos()[k]["frames"])[idx])


def test_order_is_deterministic_per_epoch_and_resumes_mid_epoch():
    """Same (seed, epoch) -> same batches; start_batch=k yields exactly the batches from k on; epochs differ."""
    src = InMemoryVideos(_videos(n=8))
    run = lambda **kw: [
        (b["keys"],
         b["frame_index"].tolist()) for b in src.iter_clips(batch_size=2, clip_frames=2, frame_stride=1, seed=3, **kw)
    ]  # noqa: E731
    full = run(epoch=0)
    assert len(full) == 4
    assert run(epoch=0) == full
    assert run(epoch=0, start_batch=2) == full[2:]
    assert [k for k, _ in run(epoch=1)] != [k for k, _ in full]


def test_ranks_get_disjoint_videos():
    """With world_size 2 the ranks' batches of one epoch are disjoint and together cover the drop-last epoch."""
    src = InMemoryVideos(_videos(n=9))
    keys = [
        sum((b["keys"] for b in src.iter_clips(batch_size=2, clip_frames=2, frame_stride=1, rank=r, world_size=2)), [])
        for r in (0, 1)
    ]
    assert len(keys[0]) == len(keys[1]) == 4 and not set(keys[0]) & set(keys[1])
    val = [
        sum(
            (
                b["keys"]
                for b in src.iter_clips(
                    batch_size=4,
                    clip_frames=2,
                    frame_stride=1,
                    rank=r,
                    world_size=2,
                    shuffle=False,
                    random_start=False,
                    drop_last=False,
                )
            ),
            [],
        )
        for r in (0, 1)
    ]
    assert sorted(val[0] + val[1]) == src.keys()


def test_whole_videos_in_sorted_order_with_meta_and_skip():
    """iter_videos yields VideoItems in sorted key order with masks and meta; skip leaves out done keys."""
    src = InMemoryVideos(_videos(n=3, masks=False))
    items = list(src.iter_videos(skip=["v1"]))
    assert [it.key for it in items] == ["v0", "v2"]
    assert items[0].frames.shape == (12, 3, 8, 8) and items[0].masks is None
    assert items[0].meta["proprio"].shape == (12, 4)
    assert not src.has_masks


def test_bad_videos_are_clear_errors():
    """Short videos, mixed sizes, mask/frame mismatch and NaN frames fail naming the video."""
    with pytest.raises(ValueError, match="shorter than one clip"):
        next(InMemoryVideos(_videos(T=4)).iter_clips(batch_size=1, clip_frames=3, frame_stride=2))
    v = _videos(n=2)
    v["v1"]["frames"] = np.zeros((12, 4, 4, 3), np.uint8)
    v["v1"]["masks"] = np.zeros((12, 4, 4))
    with pytest.raises(ValueError, match="v1"):
        InMemoryVideos(v)
    v = _videos(n=1)
    v["v0"]["masks"] = np.zeros((11, 8, 8))
    with pytest.raises(ValueError, match="masks"):
        InMemoryVideos(v)
    with pytest.raises(ValueError, match="NaN"):
        InMemoryVideos({"a": {"frames": torch.full((2, 3, 4, 4), float("nan"))}})


def test_registry_opens_sources_from_config_and_explains_missing_ones():
    """encoder.data.source picks a registered factory; 'shards' without a path says what to set; unknown names list
    choices."""
    cfg = load_config([], [])
    with pytest.raises(VideoSourceUnavailable, match="needs encoder.data.path"):
        open_video_source(cfg.encoder.data, "train")
    cfg.encoder.data.source = "nope"
    with pytest.raises(VideoSourceUnavailable, match="not a registered video source"):
        open_video_source(cfg.encoder.data, "train")
    src = InMemoryVideos(_videos(n=2))
    register_video_source("test_fixed", lambda *, path, split, data_cfg=None, image_size=None: src)
    cfg.encoder.data.source = "test_fixed"
    assert open_video_source(cfg.encoder.data, "val") is src
