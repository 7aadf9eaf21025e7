"""Decoded videos for the object-centric encoders: training clips and whole videos, behind one interface.

A *video source* serves one split and offers the two views of the data contract (see the project design):

* :meth:`VideoSource.iter_clips` -> clip batches ``{"frames": float32 (B, T, 3, H, W) ImageNet-normalised,
  "masks": int16 (B, T, H, W) instance ids (0 = background, present only if the source has them),
  "keys": list[str], "frame_index": int64 (B, T)}``, in a deterministic order given (seed, epoch), starting at
  any batch so a resumed run continues exactly where it stopped;
* :meth:`VideoSource.iter_videos` -> :class:`VideoItem` ``(key, frames (T, 3, H, W), masks (T, H, W) | None, meta)``
  in sorted key order, ``meta`` holding per-frame extras (``proprio``, ``action``, ``state``: arrays with T rows).

Sources are registered by name (:func:`cjepa.data.video_sources.register_video_source`) and opened from the
``encoder.data``
config (:func:`cjepa.data.video_sources.open_video_source`). ``memory`` is :class:`InMemoryVideos` (videos already in
RAM; built from Python,
not from a config); ``shards`` is :class:`cjepa.data.shard_source.ShardVideoSource` (webdataset video shards
written by ``cjepa data``, decoded with PyAV).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Protocol, Sequence

import numpy as np
import torch

from cjepa.data.video import preprocess_frames


class VideoSourceUnavailable(RuntimeError):
    """The configured video source cannot be used in this installation; the message says why."""


@dataclass
class VideoItem:
    key: str
    frames: torch.Tensor  # (T, 3, H, W) float32, ImageNet-normalised
    masks: Optional[torch.Tensor]  # (T, H, W) int16 instance ids, 0 = background
    meta: dict[str, Any] = field(default_factory=dict)  # per-frame arrays with T rows, plus scalars


class VideoSource(Protocol):
    def __len__(self) -> int: ...

    def keys(self) -> list[str]: ...

    @property
    def has_masks(self) -> bool: ...

    def iter_clips(
        self,
        *,
        batch_size: int,
        clip_frames: int,
        frame_stride: int,
        seed: int = 0,
        epoch: int = 0,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        random_start: bool = True,
        max_videos: int = 0,
        drop_last: bool = True,
    ) -> Iterator[dict]: ...

    def iter_videos(self, *, rank: int = 0, world_size: int = 1, skip: Sequence[str] = ()) -> Iterator[VideoItem]: ...



def clip_span(clip_frames: int, frame_stride: int) -> int:
    """Decoded frames a clip covers: (clip_frames - 1) * stride + 1."""
    return (clip_frames - 1) * frame_stride + 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix-style), stable across processes and Python versions."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h ^= (int(p) + 0x9E3779B97F4A7C15 + ((h << 6) & 0xFFFFFFFFFFFFFFFF) + (h >> 2)) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


class InMemoryVideos:
    """A video source over videos held in memory (tests, notebooks, small generated worlds).

    ``videos``: key -> dict with ``frames`` (uint8 (T, H, W, 3) RGB, or float32 (T, 3, H, W) already
    ImageNet-normalised), optional ``masks`` ((T, H, W) integer instance ids, 0 = background) and optional
    ``meta`` (dict of per-frame arrays / scalars). Keys are served in sorted order.
    """

    def __init__(self, videos: Mapping[str, Mapping[str, Any]]):
        if not videos:
            raise ValueError("InMemoryVideos needs at least one video")
        self._keys = sorted(videos)
        self._frames: dict[str, torch.Tensor] = {}
        self._masks: dict[str, Optional[torch.Tensor]] = {}
        self._meta: dict[str, dict] = {}
        size = None
        for k in self._keys:
            v = videos[k]
            if "frames" not in v:
                raise ValueError(f"video {k!r} has no 'frames'")
            f = torch.as_tensor(v["frames"])
            f = preprocess_frames(f) if f.dtype == torch.uint8 else f.float()
            if f.dim() != 4 or f.shape[1] != 3:
                raise ValueError(
                    f"video {k!r}: frames must be uint8 (T, H, W, 3) or float (T, 3, H, W); got {tuple(f.shape)}"
                )
            if not torch.isfinite(f).all():
                raise ValueError(f"video {k!r}: frames contain NaN or inf")
            if size is None:
                size = tuple(f.shape[-2:])
            elif tuple(f.shape[-2:]) != size:
                raise ValueError(
                    f"video {k!r} is {tuple(f.shape[-2:])}, others are {size}: one source serves one frame size"
                )
            m = v.get("masks")
            if m is not None:
                m = torch.as_tensor(np.asarray(m)).to(torch.int16)
                if tuple(m.shape) != (f.shape[0], *size):
                    raise ValueError(
                        f"video {k!r}: masks {tuple(m.shape)} do not match frames (T, H, W) = {(f.shape[0], *size)}"
                    )
            self._frames[k], self._masks[k], self._meta[k] = f, m, dict(v.get("meta", {}))
        have = {self._masks[k] is not None for k in self._keys}
        if len(have) > 1:
            raise ValueError("either every video or no video of a source must have masks")
        self._has_masks = have.pop()

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[str]:
        return list(self._keys)

    @property
    def has_masks(self) -> bool:
        return self._has_masks

    def _order(self, seed: int, epoch: int, shuffle: bool, max_videos: int) -> list[int]:
        n = len(self._keys)
        if shuffle:
            g = torch.Generator().manual_seed(mix_seed(seed, epoch))
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        return order[:max_videos] if max_videos > 0 else order

    def iter_clips(
        self,
        *,
        batch_size,
        clip_frames,
        frame_stride,
        seed=0,
        epoch=0,
        start_batch=0,
        rank=0,
        world_size=1,
        shuffle=True,
        random_start=True,
        max_videos=0,
        drop_last=True,
    ) -> Iterator[dict]:
        span = clip_span(clip_frames, frame_stride)
        short = [k for k in self._keys if self._frames[k].shape[0] < span]
        if short:
            raise ValueError(
                f"{len(short)} videos are shorter than one clip ({clip_frames} frames at stride {frame_stride} = "
                f"{span} "
                f"decoded frames), e.g. {short[:3]}"
            )
        order = self._order(seed, epoch, shuffle, max_videos)
        if drop_last:
            n_batches = len(order) // (batch_size * world_size)
            batches = [
                order[(b * world_size + rank) * batch_size : (b * world_size + rank + 1) * batch_size]
                for b in range(n_batches)
            ]
        else:
            mine = order[rank::world_size]
            batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
        for b in range(start_batch, len(batches)):
            yield self._clip_batch(batches[b], span, clip_frames, frame_stride, seed, epoch, random_start)

    def _clip_batch(
        self, idx: list[int], span: int, clip_frames: int, stride: int, seed: int, epoch: int, random_start: bool
    ) -> dict:
        frames, masks, keys, fidx = [], [], [], []
        for i in idx:
            k = self._keys[i]
            T = self._frames[k].shape[0]
            start = 0
            if random_start and T > span:
                g = torch.Generator().manual_seed(mix_seed(seed, epoch, i, 1))
                start = int(torch.randint(0, T - span + 1, (1,), generator=g))
            sel = torch.arange(start, start + span, stride)
            frames.append(self._frames[k][sel])
            if self._has_masks:
                masks.append(self._masks[k][sel])
            keys.append(k)
            fidx.append(sel)
        out = {"frames": torch.stack(frames), "keys": keys, "frame_index": torch.stack(fidx).to(torch.int64)}
        if self._has_masks:
            out["masks"] = torch.stack(masks)
        return out

    def iter_videos(self, *, rank=0, world_size=1, skip: Sequence[str] = ()) -> Iterator[VideoItem]:
        skip_set = set(skip)
        for k in self._keys[rank::world_size]:
            if k in skip_set:
                continue
            yield VideoItem(k, self._frames[k], self._masks[k], dict(self._meta[k]))
