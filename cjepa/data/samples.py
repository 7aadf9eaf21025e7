"""One clip-reading core for every reader of the video shards, and the skip counting the clip loaders share.

A *raw sample* is what a shard holds for one video: ``{"__key__", "__url__", ext: bytes}`` (webdataset's sample
dict). :func:`decode_sample` turns it into decoded clips: it reads the meta json, checks the components, decodes
exactly the frames the clips need with PyAV, resizes and normalises them (:func:`cjepa.data.video.preprocess_frames`)
and decodes the clips' instance masks. The streaming loader (:mod:`cjepa.data.loader`), the random-access video
source (:mod:`cjepa.data.shard_source`), whole-video extraction and DALI's CPU checks all go through it, so a sample
is judged usable or bad in one place, for one reason.

:class:`SkipLog` is the bad-sample bookkeeping of the clip loaders (PyAV and DALI): counts by reason, the first
1000 bad samples, one log line per (shard, key, reason). :class:`ClipLoaderBase` adds what both loaders share on
top of it: the epoch length, the saved-layout check of a resumed position, and closing as a context manager.
"""

from __future__ import annotations

import logging
import zlib
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from cjepa.data.shards import check_meta, decode_masks, load_json_component
from cjepa.data.video import VideoDecodeError, decode_frames, preprocess_frames, resize_masks

log = logging.getLogger("cjepa.data")

MAX_BAD_SAMPLES = 1000  # bad samples kept by name; the counters keep counting past it


class BadSample(ValueError):
    """One sample cannot be used; ``reason`` is a short category for the counters."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


# --------------------------------------------------------------------------------------------- read -> decode -> masks


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a video: ``frames`` frames ``stride`` apart, starts drawn or chunked."""

    frames: int = 6
    stride: int = 2
    sampling: str = "random"  # "random": clips_per_video random starts per pass; "chunks": all non-overlapping
    clips_per_video: int = 1

    @property
    def span(self) -> int:
        return (self.frames - 1) * self.stride + 1

    def starts(self, num_frames: int, key: str, seed: int, pass_: int) -> list[int]:
        """Clip start frames for a video; random starts depend on (seed, pass, key) only."""
        last = num_frames - self.span
        if last < 0:
            return []
        if self.sampling == "chunks":
            return list(range(0, last + 1, self.span))
        rng = np.random.default_rng([seed, pass_, zlib.crc32(key.encode())])
        return sorted(int(s) for s in rng.integers(0, last + 1, size=self.clips_per_video))


def sample_meta(raw: dict) -> dict:
    """The sample's meta json, checked against the reader's contract (:func:`cjepa.data.shards.check_meta`)."""
    key = raw["__key__"]
    if "json" not in raw:
        raise BadSample("missing_component", f"no {key}.json")
    try:
        return check_meta(load_json_component(raw["json"], f"{key}.json"))
    except ValueError as err:
        raise BadSample("bad_meta", str(err)) from err


def sample_frames(raw: dict, indices: np.ndarray, meta: Optional[dict], threads: int = 1) -> np.ndarray:
    """uint8 frames (len(indices), H, W, 3) of the sample's video; BadSample when it is missing, undecodable or
    not the size ``meta`` records (unchecked without a meta: DALI's prepare step has checked it already)."""
    if "mp4" not in raw:
        raise BadSample("missing_component", f"no {raw['__key__']}.mp4")
    try:
        frames = decode_frames(raw["mp4"], indices, threads=threads)
    except VideoDecodeError as err:
        raise BadSample("bad_video", str(err)) from err
    if meta is not None and frames.shape[1:3] != (meta["height"], meta["width"]):
        raise BadSample("bad_meta", f"video is {frames.shape[1]}x{frames.shape[2]}, "
                                    f"meta says {meta['height']}x{meta['width']}")
    return frames


def sample_masks(raw: dict, indices: np.ndarray, meta: Optional[dict]) -> np.ndarray:
    """Instance ids (len(indices), H, W) of the sample's masks; BadSample when missing, corrupt or not the size
    ``meta`` records (unchecked without a meta)."""
    key = raw["__key__"]
    if "masks.npz" not in raw:
        raise BadSample("missing_component", f"no {key}.masks.npz")
    try:
        masks = decode_masks(raw["masks.npz"], indices)
    except ValueError as err:
        raise BadSample("bad_masks", str(err)) from err
    if meta is not None and masks.shape[1:] != (meta["height"], meta["width"]):
        raise BadSample("bad_masks", f"masks are {masks.shape[1:]}, video is {meta['height']}x{meta['width']}")
    return masks


def decode_sample(raw: dict, clips: Sequence[np.ndarray], *, meta: Optional[dict] = None, image_size=None,
                  with_masks: bool = False, threads: int = 1) -> list[dict]:
    """A raw sample -> one dict per clip: ``{frames (T, 3, h, w) f32, masks (T, h, w) i16 (with_masks), key,
    frame_index (T,) i64}``; ``clips`` holds each clip's frame indices. Frames shared by clips are decoded once."""
    meta = sample_meta(raw) if meta is None else meta
    needed = np.unique(np.concatenate(clips))
    frames = sample_frames(raw, needed, meta, threads)  # (N, H, W, 3) uint8
    masks = sample_masks(raw, needed, meta) if with_masks else None  # (N, H, W)
    row = {int(f): i for i, f in enumerate(needed)}
    out = []
    for frame_index in clips:
        rows = [row[int(f)] for f in frame_index]
        item = {"frames": preprocess_frames(frames[rows], image_size), "key": raw["__key__"],
                "frame_index": torch.from_numpy(np.asarray(frame_index, np.int64))}
        if masks is not None:
            item["masks"] = torch.from_numpy(resize_masks(masks[rows], image_size).astype(np.int16))
        out.append(item)
    return out


def collate_clips(items: list[dict]) -> dict:
    """Clip dicts -> the batch contract: frames (B,T,3,H,W) f32, masks (B,T,H,W) i16 when present, keys,
    frame_index (B,T) i64."""
    batch = {
        "frames": torch.stack([c["frames"] for c in items]),
        "keys": [c["key"] for c in items],
        "frame_index": torch.stack([c["frame_index"] for c in items]),
    }
    if items and all("masks" in c for c in items):
        batch["masks"] = torch.stack([c["masks"] for c in items])
    return batch


def identity(x):
    """collate_fn of loaders whose dataset returns finished items (module level: workers pickle it)."""
    return x


# --------------------------------------------------------------------------------------------- skip counting


class SkipLog:
    """Bad samples of a reader: ``skipped`` counts by reason, ``bad_samples`` names the first 1000 as
    (shard, key, reason, detail), and each (shard, key, reason) is logged once on the ``cjepa.data`` logger."""

    def __init__(self):
        self.skipped: Counter = Counter()
        self.bad_samples: list[tuple] = []
        self._logged: set = set()

    def count_bad(self, shard: str, key: str, reason: str, detail: str, count: int = 1) -> None:
        self.skipped[reason] += count
        if len(self.bad_samples) < MAX_BAD_SAMPLES:
            self.bad_samples.append((shard, key, reason, detail))
        if (shard, key, reason) not in self._logged:
            self._logged.add((shard, key, reason))
            log.warning("skipped sample: shard %s key %s: %s", shard, key, detail)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


class ClipLoaderBase(SkipLog, ABC):
    """What the clip loaders share: skip counting, ``batches_per_epoch`` as the length, the check that a saved
    position was written with this loader's layout, and ``with``-block closing (subclasses define ``close``)."""

    batches_per_epoch: int
    layout: list[int]

    def __len__(self) -> int:
        return self.batches_per_epoch

    def same_layout(self, state: dict, restart_pass: int) -> bool:
        """Whether ``state`` was saved with this loader's layout; logs why the stream restarts when it was not."""
        if state.get("layout") == self.layout:
            return True
        log.warning("data position saved with layout %s, now %s: restarting the data stream at pass %d",
                    state.get("layout"), self.layout, restart_pass)
        return False

    @abstractmethod
    def close(self) -> None:
        """Release workers, pipelines and buffers now."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
