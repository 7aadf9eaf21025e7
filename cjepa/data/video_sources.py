"""The registry of video sources: ``encoder.data.source=<name>`` -> a :class:`~cjepa.data.clips.VideoSource`.

It sits one level above the sources it opens (``clips`` declares the contract and the in-memory source,
``shard_source`` the shard one), so neither of them imports the other.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from cjepa.data.clips import VideoSource, VideoSourceUnavailable
from cjepa.data.shard_source import open_shard_source

VideoSourceFactory = Callable[..., VideoSource]
_REGISTRY: dict[str, VideoSourceFactory] = {}


def register_video_source(name: str, factory: VideoSourceFactory) -> None:
    """Make ``encoder.data.source=<name>`` open ``factory(path=..., split=..., data_cfg=..., image_size=...)``.

    A factory raises FileNotFoundError for a split it does not have (``cjepa extract`` then skips that split) and
    :class:`VideoSourceUnavailable` when the source cannot work at all in this installation.
    """
    _REGISTRY[name] = factory


def registered_sources() -> list[str]:
    return sorted(_REGISTRY)


def _shards(*, path: str, split: str, data_cfg=None, image_size=None) -> VideoSource:
    if not path:
        raise VideoSourceUnavailable("encoder.data.source=shards needs encoder.data.path (a directory written by "
                                     "`cjepa data`)")
    return open_shard_source(path=path, split=split, data_cfg=data_cfg, image_size=image_size)


def _memory_from_config(*, path: str, split: str, data_cfg=None, image_size=None) -> VideoSource:
    raise VideoSourceUnavailable(
        "encoder.data.source=memory holds videos that live in a Python process; build cjepa.data.clips.InMemoryVideos "
        "and pass it to the task or extraction function directly (it cannot be opened from a config file)"
    )


register_video_source("shards", _shards)
register_video_source("memory", _memory_from_config)


def open_video_source(data_cfg, split: str, image_size: Optional[Sequence[int]] = None) -> VideoSource:
    """The source ``data_cfg.source`` names, for one split; frames resized to ``image_size`` (h, w) if given."""
    name = data_cfg.source
    if name not in _REGISTRY:
        raise VideoSourceUnavailable(
            f"encoder.data.source={name!r} is not a registered video source; choose one of {registered_sources()}"
        )
    return _REGISTRY[name](path=data_cfg.path, split=split, data_cfg=data_cfg, image_size=image_size)
