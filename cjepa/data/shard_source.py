"""Video shards as a :class:`cjepa.data.clips.VideoSource`: what encoder training, extraction and streaming
pretraining read when ``encoder.data.source=shards``.

Clips are read by random access through the shard indexes (each video's byte ranges), so a clip batch is a pure
function of (seed, epoch, batch index): the video order is a seeded permutation per epoch, each video's clip
start is drawn from (seed, epoch, video index), and a resumed run starts at any batch without reading the
batches before it. Only the frames a clip needs are decoded (PyAV seeks to the key frame before the clip), in
DataLoader workers, through the clip-reading core the streaming loader uses (:func:`cjepa.data.samples.decode_sample`).
Random access needs local shards: a split behind URLs is refused with a clear error (stream it with
``data.shards`` instead).

Bad samples (corrupt mp4, missing component, truncated shard) are dropped from their batch, counted in
``skipped`` and logged once with shard and key, as in the streaming loader.
"""

from __future__ import annotations

import logging
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cjepa.data.clips import VideoItem, clip_span, mix_seed
from cjepa.data.samples import BadSample, SkipLog, decode_sample, identity, sample_meta
from cjepa.data.shard_reader import Entry, read_entry, video_entries
from cjepa.data.shards import ShardError, open_split

log = logging.getLogger("cjepa.data")

# Per-frame arrays that Push-T episodes carry in their meta json; passed through as (T, k) float arrays.
PER_FRAME_META = ("state", "proprio", "action")


class _ClipDataset(Dataset):
    """Item i of a batch plan: (entry, seed tuple for its start) -> one decoded clip, or a bad-sample marker."""

    def __init__(self, plan: list[tuple[Entry, int]], *, clip_frames, stride, random_start, seed, epoch, image_size,
                 with_masks, threads):
        self.plan, self.clip_frames, self.stride, self.random_start = plan, clip_frames, stride, random_start
        self.seed, self.epoch, self.image_size, self.with_masks, self.threads = (
            seed,
            epoch,
            image_size,
            with_masks,
            threads,
        )

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int):
        e, video_index = self.plan[i]
        try:
            raw = read_entry(e)
            meta = sample_meta(raw)
            span = clip_span(self.clip_frames, self.stride)
            T = meta["num_frames"]
            if T < span:
                raise BadSample("too_short", f"video has {T} frames, a clip spans {span}")
            start = 0
            if self.random_start and T > span:
                g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, video_index, 1))
                start = int(torch.randint(0, T - span + 1, (1,), generator=g))
            idx = np.arange(start, start + span, self.stride)
            (item,) = decode_sample(raw, [idx], meta=meta, image_size=self.image_size, with_masks=self.with_masks,
                                    threads=self.threads)
            return item
        except BadSample as err:
            return {"__bad__": (e.shard.name, e.key, err.reason, err.detail)}


class _WholeVideoDataset(Dataset):
    def __init__(self, entries: list[Entry], image_size, with_masks: bool, threads: int):
        self.entries, self.image_size, self.with_masks, self.threads = entries, image_size, with_masks, threads

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        e = self.entries[i]
        try:
            raw = read_entry(e)
            meta = sample_meta(raw)
            (item,) = decode_sample(raw, [np.arange(meta["num_frames"])], meta=meta, image_size=self.image_size,
                                    with_masks=self.with_masks, threads=self.threads)
            return VideoItem(e.key, item["frames"], item.get("masks"), per_frame_meta(meta))
        except BadSample as err:
            return {"__bad__": (e.shard.name, e.key, err.reason, err.detail)}


def per_frame_meta(meta: dict) -> dict:
    """The meta json with per-frame lists (Push-T state/proprio/action) as float32 (T, k) arrays."""
    out = dict(meta)
    for k in PER_FRAME_META:
        if k in meta and isinstance(meta[k], list):
            out[k] = np.asarray(meta[k], dtype=np.float32)
    return out


class ShardVideoSource(SkipLog):
    """One split of webdataset video shards as a video source (see cjepa.data.clips.VideoSource); local shards only
    (random access). ``skipped`` counts bad samples by reason (:class:`cjepa.data.samples.SkipLog`)."""

    def __init__(self, path: str, split: str, *, image_size: Optional[Sequence[int]] = None, num_workers: int = 0,
                 decode_threads: int = 1):
        super().__init__()
        self.info = open_split(path, split)
        for problem in self.info.problems:
            log.warning("%s", problem)
        self.entries = video_entries(self.info, self.count_bad)
        if not self.entries:
            raise ShardError(f"split {split!r} under {path}: no videos")
        self.image_size = tuple(image_size) if image_size else None
        self.num_workers, self.decode_threads = num_workers, decode_threads

    def __len__(self) -> int:
        return len(self.entries)

    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    @property
    def has_masks(self) -> bool:
        return self.info.has_masks

    def _loader(self, ds: Dataset, batches: list[list[int]]):
        kw = {"timeout": 600} if self.num_workers else {}
        # generator: keep the global torch RNG (dropout) untouched by loader restarts
        return DataLoader(ds, batch_sampler=batches, num_workers=self.num_workers, collate_fn=identity,
                          generator=torch.Generator(), **kw)

    def iter_clips(self, *, batch_size, clip_frames, frame_stride, seed=0, epoch=0, start_batch=0, rank=0, world_size=1,
                   shuffle=True, random_start=True, max_videos=0, drop_last=True) -> Iterator[dict]:
        n = len(self.entries)
        order = (
            torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, epoch))).tolist()
            if shuffle
            else list(range(n))
        )
        if max_videos > 0:
            order = order[:max_videos]
        if drop_last:
            nb = len(order) // (batch_size * world_size)
            batches = [
                order[(b * world_size + rank) * batch_size : (b * world_size + rank + 1) * batch_size]
                for b in range(nb)
            ]
        else:
            mine = order[rank::world_size]
            batches = [mine[i : i + batch_size] for i in range(0, len(mine), batch_size)]
        batches = batches[start_batch:]
        plan = [(self.entries[i], i) for b in batches for i in b]
        # Positions into `plan`, batch by batch.
        pos, sampler = 0, []
        for b in batches:
            sampler.append(list(range(pos, pos + len(b))))
            pos += len(b)
        ds = _ClipDataset(plan, clip_frames=clip_frames, stride=frame_stride, random_start=random_start, seed=seed,
                          epoch=epoch,
                          image_size=self.image_size, with_masks=self.has_masks, threads=self.decode_threads)
        for items in self._loader(ds, sampler):
            good = []
            for it in items:
                if "__bad__" in it:
                    self.count_bad(*it["__bad__"])
                else:
                    good.append(it)
            if not good:
                continue
            out = {"frames": torch.stack([g["frames"] for g in good]), "keys": [g["key"] for g in good],
                   "frame_index": torch.stack([g["frame_index"] for g in good])}
            if self.has_masks:
                out["masks"] = torch.stack([g["masks"] for g in good])
            yield out

    def iter_videos(self, *, rank=0, world_size=1, skip: Sequence[str] = ()) -> Iterator[VideoItem]:
        skip_set = set(skip)
        entries = [e for e in self.entries[rank::world_size] if e.key not in skip_set]
        ds = _WholeVideoDataset(entries, self.image_size, self.has_masks, self.decode_threads)
        for items in self._loader(ds, [[i] for i in range(len(entries))]):
            for it in items:
                if isinstance(it, dict):
                    self.count_bad(*it["__bad__"])
                else:
                    yield it


class SplitNotFound(FileNotFoundError):
    """A split the shard root does not have: a FileNotFoundError, as the video-source registry asks (``cjepa
    extract`` skips such splits), and a user error (cjepa.errors) wherever it stops a command."""


def open_shard_source(*, path: str, split: str, data_cfg=None, image_size=None) -> ShardVideoSource:
    """Registry factory for ``encoder.data.source=shards``; a missing split raises SplitNotFound."""
    try:
        return ShardVideoSource(path, split, image_size=image_size,
                                num_workers=getattr(data_cfg, "num_workers", 0) if data_cfg else 0)
    except ShardError as err:
        if "no manifest" in str(err) or "not found" in str(err) or "does not exist" in str(err):
            raise SplitNotFound(str(err)) from err
        raise
