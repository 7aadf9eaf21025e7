"""CPU video pipeline: webdataset shards -> decoded, resized, normalised clips (and masks) in DataLoader workers.

Two readers over the same shards:

* :class:`VideoClipLoader` (training): streams webdataset shards (tar members grouped by key, webdataset's
  convention; plain ``webdataset`` reads the same files). Shards are dealt to the
  ``world_size x num_workers`` global workers deterministically (a per-pass permutation drawn from the seed,
  then shard ``j`` of it to worker ``j mod G``; with fewer shards than workers every worker reads every shard
  and keeps every G-th sample), shuffled through a seeded buffer, decoded with PyAV, cut into clips of
  ``clip_frames`` frames at ``clip_stride``, and batched inside the worker. Passes repeat forever; an epoch is
  a fixed number of batches per rank (equal on every rank, so DDP never waits on a rank that ran dry).
  Its position (per worker: pass, samples consumed, clips consumed of the next sample; plus which worker is
  next) is a small ``state_dict``: resuming reproduces the uninterrupted batch sequence exactly, skipping
  already-used samples without decoding them.
* :func:`iter_videos` (slot extraction): whole videos in sorted key order, random access through the shard
  indexes, decoded in parallel workers while keeping the order.

Bad data never stops a run: a sample with a missing or corrupt component, an undecodable or empty video, a
meta json without a required field, or a shard truncated mid-way is skipped, counted (``loader.skipped``)
and logged once on the ``cjepa.data`` logger naming shard and key. Problems that make the data unusable as a
whole (no manifest, missing shard files, an empty split, fewer samples than workers, a pass in which nothing
decodes) are errors raised before training starts or as soon as they are known.
"""

from __future__ import annotations

import logging
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from cjepa.data.shards import ShardError, ShardInfo, SplitInfo, check_meta, decode_masks, load_json_component, open_split, read_index
from cjepa.data.video import VideoDecodeError, decode_frames, preprocess_frames, resize_masks

log = logging.getLogger("cjepa.data")


class BadSample(ValueError):
    """One sample cannot be used; ``reason`` is a short category for the counters."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class DataError(RuntimeError):
    """The data as a whole cannot feed training (everything undecodable, too few samples for the workers)."""


@dataclass(frozen=True)
class ClipSpec:
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


# --------------------------------------------------------------------------------------------- samples


def decode_clips(raw: dict, *, clip: ClipSpec, image_size: Optional[Sequence[int]], with_masks: bool, seed: int, pass_: int,
                 decode_threads: int = 1) -> list[dict]:
    """A raw webdataset sample -> its clips ``{frames (T,3,h,w) f32, masks (T,h,w) i16?, key, frame_index (T,)}``."""
    key = raw["__key__"]
    meta = _meta_of(raw)
    if "mp4" not in raw:
        raise BadSample("missing_component", f"no {key}.mp4")
    starts = clip.starts(meta["num_frames"], key, seed, pass_)
    if not starts:
        raise BadSample("too_short", f"video has {meta['num_frames']} frames, a clip spans {clip.span}")
    idx = [np.arange(s, s + clip.span, clip.stride) for s in starts]
    needed = np.unique(np.concatenate(idx))
    frames = _decode(raw["mp4"], needed, decode_threads, meta)
    masks = _masks(raw, needed, meta) if with_masks else None
    pos = {int(f): i for i, f in enumerate(needed)}
    out = []
    for frame_index in idx:
        rows = [pos[int(f)] for f in frame_index]
        item = {"frames": preprocess_frames(frames[rows], image_size), "key": key, "frame_index": torch.from_numpy(frame_index.astype(np.int64))}
        if masks is not None:
            item["masks"] = torch.from_numpy(resize_masks(masks[rows], image_size).astype(np.int16))
        out.append(item)
    return out


def _meta_of(raw: dict) -> dict:
    key = raw["__key__"]
    if "json" not in raw:
        raise BadSample("missing_component", f"no {key}.json")
    try:
        return check_meta(load_json_component(raw["json"], f"{key}.json"))
    except ValueError as err:
        raise BadSample("bad_meta", str(err)) from err


def _decode(data: bytes, indices: np.ndarray, threads: int, meta: dict) -> np.ndarray:
    try:
        frames = decode_frames(data, indices, threads=threads)
    except VideoDecodeError as err:
        raise BadSample("bad_video", str(err)) from err
    if frames.shape[1:3] != (meta["height"], meta["width"]):
        raise BadSample("bad_meta", f"video is {frames.shape[1]}x{frames.shape[2]}, meta says {meta['height']}x{meta['width']}")
    return frames


def _masks(raw: dict, indices: np.ndarray, meta: dict) -> np.ndarray:
    key = raw["__key__"]
    if "masks.npz" not in raw:
        raise BadSample("missing_component", f"no {key}.masks.npz")
    try:
        masks = decode_masks(raw["masks.npz"], indices)
    except ValueError as err:
        raise BadSample("bad_masks", str(err)) from err
    if masks.shape[1:] != (meta["height"], meta["width"]):
        raise BadSample("bad_masks", f"masks are {masks.shape[1:]}, video is {meta['height']}x{meta['width']}")
    return masks


def collate_clips(items: list[dict]) -> dict:
    """Clip dicts -> the batch contract: frames (B,T,3,H,W) f32, masks (B,T,H,W) i16 when present, keys, frame_index (B,T) i64."""
    batch = {
        "frames": torch.stack([c["frames"] for c in items]),
        "keys": [c["key"] for c in items],
        "frame_index": torch.stack([c["frame_index"] for c in items]),
    }
    if items and all("masks" in c for c in items):
        batch["masks"] = torch.stack([c["masks"] for c in items])
    return batch


# --------------------------------------------------------------------------------------------- tar reading


def _tar_members(path: Path, state: dict) -> Iterator[dict]:
    """Regular members of a tar, streamed; records the member being read so errors can name it."""
    with open(path, "rb") as fh:
        with tarfile.open(fileobj=fh, mode="r|") as tf:
            for info in tf:
                if not info.isreg():
                    continue
                state["member"] = info.name
                data = tf.extractfile(info).read()
                if len(data) != info.size:
                    raise tarfile.ReadError(f"member {info.name} is truncated ({len(data)} of {info.size} bytes)")
                yield {"fname": info.name, "data": data, "__url__": str(path)}
            state["member"] = None


def read_shard(shard: ShardInfo, report, *, keep=None) -> Iterator[dict]:
    """Samples of one shard in tar order (``{"__key__", "__url__", ext: bytes}``); ``keep(i)`` selects by position.

    Grouping follows webdataset's convention (key = member name up to the first dot; consecutive members with
    one key are one sample). A tar that breaks mid-way (truncated or corrupt) ends the shard: the samples
    completed before the damage are kept, what could not be read is counted through
    ``report(shard, key, reason, detail, count)`` with the key at which reading failed.
    """
    state: dict[str, Any] = {"member": None}
    n = 0
    current: Optional[dict] = None

    def emit(sample):
        nonlocal n
        i, n = n, n + 1
        return keep is None or keep(i)

    try:
        for member in _tar_members(shard.path, state):
            key, _, ext = member["fname"].rsplit("/", 1)[-1].partition(".")
            if current is not None and key != current["__key__"]:
                if emit(current):
                    yield current
                current = None
            if current is None:
                current = {"__key__": key, "__url__": member["__url__"]}
            current[ext.lower()] = member["data"]
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as err:
        member = state.get("member")
        bad_key = member.rsplit("/", 1)[-1].partition(".")[0] if member else (current or {}).get("__key__", "?")
        if current is not None and current["__key__"] != bad_key and emit(current):
            yield current  # complete: the damage starts with the next sample
        lost = max(1, shard.num_samples - n) if shard.num_samples is not None else 1
        report(shard.path, bad_key, "truncated_shard", f"tar unreadable at {member or 'a header'} ({err}); {lost} sample(s) lost", lost)
        return
    if current is not None and emit(current):
        yield current
    if shard.num_samples is not None and n < shard.num_samples:  # the tar ended cleanly but early (cut at a header)
        report(shard.path, current["__key__"] if current else "?", "truncated_shard",
               f"shard ends after {n} of {shard.num_samples} samples", shard.num_samples - n)


def count_samples(shard: ShardInfo) -> int:
    if shard.num_samples is not None:
        return shard.num_samples
    if shard.index_path is not None:
        return len(read_index(shard.index_path))
    return sum(1 for _ in read_shard(shard, lambda *a: None))


# --------------------------------------------------------------------------------------------- clip stream


class ClipStream(IterableDataset):
    """The per-worker batch stream of :class:`VideoClipLoader` (runs inside DataLoader workers)."""

    def __init__(self, split: SplitInfo, *, batch_size: int, clip: ClipSpec, image_size, with_masks: bool, train: bool, seed: int,
                 rank: int, world_size: int, num_workers: int, shuffle_buffer: int, decode_threads: int,
                 positions: dict[int, tuple[int, int, int]], rotation: int):
        self.shards = split.shards
        self.batch_size, self.clip, self.image_size, self.with_masks = batch_size, clip, image_size, with_masks
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.num_workers = max(1, num_workers)
        self.shuffle_buffer, self.decode_threads = shuffle_buffer, decode_threads
        self.positions, self.rotation = positions, rotation

    # -- assignment
    def global_workers(self) -> int:
        return self.world_size * self.num_workers

    def shard_order(self, pass_: int) -> list[int]:
        n = len(self.shards)
        if not self.train:
            return list(range(n))
        return [int(i) for i in np.random.default_rng([self.seed, pass_, 17]).permutation(n)]

    def emission(self, pass_: int, g: int, report) -> Iterator[dict]:
        """Raw samples worker ``g`` consumes in pass ``pass_``, in order (after the seeded shuffle buffer)."""
        G = self.global_workers()
        order = self.shard_order(pass_)
        if len(order) >= G:
            mine = [self.shards[order[j]] for j in range(g, len(order), G)]
            stream = (s for shard in mine for s in read_shard(shard, report))
        else:  # fewer shards than workers: everyone reads everything, keeps every G-th sample
            stream = self._strided(order, g, G, report)
        if not self.train or self.shuffle_buffer <= 1:
            yield from stream
            return
        rng = np.random.default_rng([self.seed, pass_, g, 29])
        buf: list[dict] = []
        for s in stream:
            if len(buf) < self.shuffle_buffer:
                buf.append(s)
                continue
            j = int(rng.integers(len(buf)))
            buf[j], s = s, buf[j]
            yield s
        while buf:
            yield buf.pop(int(rng.integers(len(buf))))

    def _strided(self, order: list[int], g: int, G: int, report) -> Iterator[dict]:
        counter = [0]

        def keep(_i: int) -> bool:
            c = counter[0]
            counter[0] += 1
            return c % G == g

        for j, idx in enumerate(order):
            owner = j % G == g  # only one worker reports a broken shard
            yield from read_shard(self.shards[idx], report if owner else (lambda *a: None), keep=keep)

    # -- iteration
    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        physical = info.id if info is not None else 0
        local = (physical + self.rotation) % self.num_workers
        g = self.rank * self.num_workers + local
        pass_, skip_raw, skip_clips = self.positions.get(g, (0, 0, 0))
        bad: list[tuple] = []
        buf: list[dict] = []
        while True:
            emitted = good = 0

            def report(shard, key, reason, detail, count=1):
                if emitted >= skip_raw:  # events before the resume point were reported before the checkpoint
                    bad.append((str(shard), key, reason, detail, count))

            for raw in self.emission(pass_, g, report):
                emitted += 1
                if emitted <= skip_raw:
                    continue
                try:
                    clips = decode_clips(raw, clip=self.clip, image_size=self.image_size, with_masks=self.with_masks, seed=self.seed,
                                         pass_=pass_, decode_threads=self.decode_threads)
                except BadSample as err:
                    bad.append((raw.get("__url__", "?"), raw["__key__"], err.reason, err.detail, 1))
                    continue
                good += 1
                first = skip_clips if emitted == skip_raw + 1 else 0
                for ci in range(first, len(clips)):
                    buf.append(clips[ci])
                    if len(buf) == self.batch_size:
                        pos = (pass_, emitted - 1, ci + 1) if ci + 1 < len(clips) else (pass_, emitted, 0)
                        yield self._batch(buf, g, pos, bad)
                        buf, bad = [], []
            if emitted == 0:
                raise DataError(f"global worker {g} of {self.global_workers()} got no samples in pass {pass_}: "
                                f"fewer samples than rank x workers? ({len(self.shards)} shard(s))")
            if good == 0 and emitted > skip_raw:
                raise DataError(f"global worker {g}: none of the {emitted - skip_raw} samples of pass {pass_} could be used; "
                                f"last problems: {[b[:3] for b in bad[-3:]]}")
            skip_raw = skip_clips = 0
            if not self.train:
                if buf:
                    yield self._batch(buf, g, (pass_ + 1, 0, 0), bad)
                    bad = []
                if bad:
                    yield {"_worker": g, "_pos": (pass_ + 1, 0, 0), "_bad": bad}
                return
            pass_ += 1

    def _batch(self, items: list[dict], g: int, pos: tuple, bad: list) -> dict:
        batch = collate_clips(items)
        batch.update({"_worker": g, "_pos": pos, "_bad": list(bad)})
        return batch


class VideoClipLoader:
    """Batches of decoded clips from a split of video shards (the CPU path of the decoded clip batch contract).

    Iterating yields ``batches_per_epoch`` batches (training) or every clip once (``train=False``), each
    ``{"frames": (B, T, 3, H, W) float32, "masks": (B, T, H, W) int16 (when the split has masks), "keys": [str],
    "frame_index": (B, T) int64}``. ``skipped`` counts unusable samples by reason.
    """

    def __init__(self, split: SplitInfo | str, *, batch_size: int = 32, clip: ClipSpec = ClipSpec(), image_size=(196, 196),
                 with_masks: Optional[bool] = None, train: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, shuffle_buffer: int = 64, decode_threads: int = 1, batches_per_epoch: Optional[int] = None,
                 pin_memory: bool = False, timeout_s: float = 600.0):
        self.split = split if isinstance(split, SplitInfo) else open_split(split)
        for problem in self.split.problems:
            log.warning("%s", problem)
        if with_masks is None:
            with_masks = self.split.has_masks
        self.batch_size, self.clip, self.image_size, self.with_masks = batch_size, clip, image_size, with_masks
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.num_workers, self.shuffle_buffer, self.decode_threads = num_workers, shuffle_buffer, decode_threads
        self.pin_memory, self.timeout_s = pin_memory, timeout_s
        G = world_size * max(1, num_workers)
        self.num_samples = sum(count_samples(s) for s in self.split.shards)
        if self.num_samples == 0:
            raise ShardError(f"split {self.split.name!r}: no samples")
        if self.num_samples < G:
            raise ShardError(f"split {self.split.name!r} has {self.num_samples} samples, fewer than world_size x workers = {G}")
        per_video = clip.clips_per_video if clip.sampling == "random" else 1
        self.batches_per_epoch = batches_per_epoch or max(1, (self.num_samples * per_video) // (world_size * batch_size))
        self.positions: dict[int, tuple[int, int, int]] = {}
        self.next_worker = 0
        self.skipped: Counter = Counter()
        self.bad_samples: list[tuple] = []  # (shard, key, reason, detail), first 1000
        self._logged: set = set()
        self._it: Optional[Iterator] = None

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _loader(self) -> DataLoader:
        ds = ClipStream(self.split, batch_size=self.batch_size, clip=self.clip, image_size=self.image_size, with_masks=self.with_masks,
                        train=self.train, seed=self.seed, rank=self.rank, world_size=self.world_size, num_workers=self.num_workers,
                        shuffle_buffer=self.shuffle_buffer, decode_threads=self.decode_threads, positions=dict(self.positions),
                        rotation=self.next_worker)
        # Its own generator: creating a DataLoader iterator otherwise draws from the global torch RNG, so a resumed
        # run (which creates it at another step) would shift the dropout masks of an uninterrupted one.
        kw: dict[str, Any] = {"batch_size": None, "num_workers": self.num_workers, "pin_memory": self.pin_memory,
                              "generator": torch.Generator()}
        if self.num_workers > 0:
            kw.update(timeout=self.timeout_s, prefetch_factor=2)
        return DataLoader(ds, **kw)

    def _consume(self, item: dict) -> Optional[dict]:
        for shard, key, reason, detail, count in item.pop("_bad", []):
            self.skipped[reason] += count
            if len(self.bad_samples) < 1000:
                self.bad_samples.append((shard, key, reason, detail))
            if (shard, key, reason) not in self._logged:
                self._logged.add((shard, key, reason))
                log.warning("skipped sample: shard %s key %s: %s", shard, key, detail)
        g = item.pop("_worker")
        self.positions[g] = item.pop("_pos")
        local = g - self.rank * max(1, self.num_workers)
        self.next_worker = (local + 1) % max(1, self.num_workers)
        return item if "frames" in item else None

    def __iter__(self) -> Iterator[dict]:
        if not self.train:
            for item in self._loader():
                batch = self._consume(item)
                if batch is not None:
                    yield batch
            return
        if self._it is None:
            self._it = iter(self._loader())
        produced = 0
        while produced < self.batches_per_epoch:
            batch = self._consume(next(self._it))
            if batch is not None:
                produced += 1
                yield batch

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def state_dict(self) -> dict:
        return {"positions": {str(k): list(v) for k, v in self.positions.items()}, "next_worker": self.next_worker,
                "layout": [self.world_size, max(1, self.num_workers)], "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("layout") != [self.world_size, max(1, self.num_workers)]:
            log.warning("data position saved with (world_size, workers) = %s, now %s: restarting the data stream at pass %d",
                        state.get("layout"), [self.world_size, max(1, self.num_workers)], self._max_pass(state) + 1)
            restart = self._max_pass(state) + 1
            self.positions = {g: (restart, 0, 0) for g in range(self.world_size * max(1, self.num_workers))}
            self.next_worker = 0
        else:
            self.positions = {int(k): tuple(v) for k, v in state["positions"].items()}
            self.next_worker = int(state.get("next_worker", 0))
        self._it = None

    @staticmethod
    def _max_pass(state: dict) -> int:
        return max([int(v[0]) for v in state.get("positions", {}).values()] or [0])

    def close(self) -> None:
        """Stop the DataLoader workers now (the DALI loader has the same method, so callers close either kind)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def __enter__(self) -> "VideoClipLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def build_clip_loader(data_cfg, split: str, *, train: bool = True, rank: int = 0, world_size: int = 1, seed: int = 0):
    """The clip loader a config asks for (``data.decoder``: pyav -> :class:`VideoClipLoader`, dali -> DALI)."""
    clip = ClipSpec(data_cfg.clip_frames, data_cfg.clip_stride, data_cfg.clip_sampling if train else "chunks", data_cfg.clips_per_video)
    if not data_cfg.shards:
        raise ShardError("data.shards is empty: point it at a directory written by `cjepa data world|clevrer`")
    info = open_split(data_cfg.shards, split)
    with_masks = None if data_cfg.with_masks else False
    if data_cfg.decoder == "dali":
        from cjepa.data.dali import DaliClipLoader

        return DaliClipLoader(info, batch_size=data_cfg.video_batch_size, clip=clip, image_size=data_cfg.image_size, with_masks=with_masks,
                              train=train, seed=seed, rank=rank, world_size=world_size, decode=data_cfg.dali_decode,
                              shuffle_buffer=data_cfg.shuffle_buffer)
    log.info("video clips: CPU pipeline (PyAV), %d DataLoader workers, split %s", data_cfg.num_workers, info.name)
    return VideoClipLoader(info, batch_size=data_cfg.video_batch_size, clip=clip, image_size=data_cfg.image_size, with_masks=with_masks,
                           train=train, seed=seed, rank=rank, world_size=world_size, num_workers=data_cfg.num_workers,
                           shuffle_buffer=data_cfg.shuffle_buffer, decode_threads=data_cfg.decode_threads)


# --------------------------------------------------------------------------------------------- whole videos


@dataclass
class _Entry:
    key: str
    shard: ShardInfo
    components: dict[str, tuple[int, int]]


class _VideoDataset(Dataset):
    def __init__(self, entries: list[_Entry], image_size, stride: int, with_masks: bool, decode_threads: int):
        self.entries, self.image_size, self.stride = entries, image_size, stride
        self.with_masks, self.decode_threads = with_masks, decode_threads

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        e = self.entries[i]
        try:
            raw = read_entry(e)
            meta = _meta_of(raw)
            if "mp4" not in raw:
                raise BadSample("missing_component", f"no {e.key}.mp4")
            idx = np.arange(0, meta["num_frames"], self.stride)
            frames = preprocess_frames(_decode(raw["mp4"], idx, self.decode_threads, meta), self.image_size)
            masks = torch.from_numpy(resize_masks(_masks(raw, idx, meta), self.image_size).astype(np.int16)) if self.with_masks else None
            return e.key, frames, masks, meta
        except BadSample as err:
            return ("__bad__", str(e.shard.path), e.key, err.reason, err.detail)


def read_entry(e: _Entry) -> dict:
    """The raw components of one sample, read by byte range: ``{"__key__", "__url__", ext: bytes}``."""
    raw = {"__key__": e.key, "__url__": str(e.shard.path)}
    with open(e.shard.path, "rb") as fh:
        for ext, (off, size) in e.components.items():
            fh.seek(off)
            data = fh.read(size)
            if len(data) != size:
                raise BadSample("truncated_shard", f"{e.key}.{ext} ends past the end of the shard")
            raw[ext] = data
    return raw


def video_entries(split: SplitInfo, report) -> list[_Entry]:
    """Every sample of a split with its byte ranges, from the shard indexes (or a scan where an index is missing)."""
    entries: list[_Entry] = []
    for shard in split.shards:
        if shard.index_path is not None:
            samples = read_index(shard.index_path)
        else:
            samples = []
            offsets = _scan_offsets(shard, report)
            for key, comps in offsets:
                samples.append({"key": key, "components": comps})
        entries += [_Entry(s["key"], shard, s["components"]) for s in samples]
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, c in Counter(keys).items() if c > 1)[:5]
        raise ShardError(f"split {split.name!r}: duplicate keys across shards, e.g. {dup}")
    return sorted(entries, key=lambda e: e.key)


def _scan_offsets(shard: ShardInfo, report) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    try:
        with tarfile.open(shard.path, "r:") as tf:
            for m in tf:
                if not m.isreg():
                    continue
                key, _, ext = m.name.split("/")[-1].partition(".")
                if not out or out[-1][0] != key:
                    out.append((key, {}))
                out[-1][1][ext] = (m.offset_data, m.size)
    except (tarfile.TarError, OSError, EOFError) as err:
        report(shard.path, out[-1][0] if out else "?", "truncated_shard", f"tar unreadable ({err})", 1)
    return out


def _identity(x):
    return x


def iter_videos(split: SplitInfo | str, *, image_size=(196, 196), stride: int = 1, with_masks: Optional[bool] = None, rank: int = 0,
                world_size: int = 1, num_workers: int = 0, decode_threads: int = 1, stats: Optional[Counter] = None
                ) -> Iterator[tuple[str, torch.Tensor, Optional[torch.Tensor], dict]]:
    """Whole videos for extraction: ``(key, frames (T, 3, h, w) f32, masks (T, h, w) i16 or None, meta)`` in sorted key order.

    Frames ``0, stride, 2 stride, ...`` (stride 1 = every frame; the original extracted at stride 1 although the
    encoder trained at stride 2, Q15: choose deliberately). Rank r of W takes keys r, r+W, ... of the sorted
    list. Unusable videos are skipped, logged and counted into ``stats``.
    """
    info = split if isinstance(split, SplitInfo) else open_split(split)
    for problem in info.problems:
        log.warning("%s", problem)
    stats = stats if stats is not None else Counter()
    if with_masks is None:
        with_masks = info.has_masks

    def report(shard, key, reason, detail, count=1):
        stats[reason] += count
        log.warning("skipped sample: shard %s key %s: %s", shard, key, detail)

    entries = video_entries(info, report)[rank::world_size]
    if not entries:
        raise ShardError(f"split {info.name!r}: no videos for rank {rank} of {world_size}")
    ds = _VideoDataset(entries, image_size, stride, with_masks, decode_threads)
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=_identity, generator=torch.Generator(),
                        **({"timeout": 600} if num_workers else {}))
    for item in loader:
        if item[0] == "__bad__":
            _, shard, key, reason, detail = item
            report(shard, key, reason, detail)
            continue
        yield item
