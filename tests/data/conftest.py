"""Small video splits shared by the data tests: generated once per session, tiny frames, few videos."""

from __future__ import annotations

import pytest

from cjepa.config import WorldConfig

# 64x48, 20 shown frames: decodes in milliseconds, still has collisions and questions
TINY = dict(height=48, width=64, num_frames=20, future_frames=16, min_objects=3, max_objects=5, shard_size=3, seed=3)


def tiny_world(**kw) -> WorldConfig:
    return WorldConfig(**{**TINY, **kw})


@pytest.fixture(scope="session")
def world_shards(tmp_path_factory):
    """A 7-video H.264 world split in 3 shards (3 + 3 + 1 videos), with masks and questions: ROOT/train."""
    from cjepa.data.world.generate import generate_split

    root = tmp_path_factory.mktemp("world_h264")
    generate_split(tiny_world(), "train", 7, root, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def world_vp9_shards(tmp_path_factory):
    """A 4-video VP9 world split (DALI's CPU video decoder reads VP9, not H.264)."""
    from cjepa.data.world.generate import generate_split

    root = tmp_path_factory.mktemp("world_vp9")
    generate_split(tiny_world(codec="vp9", shard_size=2), "train", 4, root, workers=1, progress=False)
    return root
