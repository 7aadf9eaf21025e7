"""CPU video pipeline: webdataset shards -> decoded, resized, normalised clips (and masks) in DataLoader workers.

Two readers over the same shards:

* :class:`VideoClipLoader` (training): streams webdataset shards from local files, URLs or ``pipe:`` commands
  through webdataset's tar reader (:mod:`cjepa.data.shard_reader`). Shards are dealt to the
  ``world_size x num_workers`` global workers deterministically (a per-pass permutation drawn from the seed,
  then shard ``j`` of it to worker ``j mod G``; with fewer shards than workers every worker reads every shard
  and keeps every G-th sample), shuffled through a seeded buffer, decoded with PyAV, cut into clips of
  ``clip_frames`` frames at ``clip_stride``, and batched inside the worker. Passes repeat forever; an epoch is
  a fixed number of batches per rank (equal on every rank, so DDP never waits on a rank that ran dry).
  Its position (per worker: pass, samples consumed, clips consumed of the next sample; plus which worker is
  next) is a small ``state_dict``: resuming reproduces the uninterrupted batch sequence exactly, skipping
  already-used samples without decoding them. With ``resampled``, each pass draws its shards with
  replacement instead (webdataset's resampled stream), from (seed, pass, worker): as deterministic and resumable.
* :func:`iter_videos` (slot extraction): whole videos in sorted key order, random access through the shard
  indexes, decoded in parallel workers while keeping the order (a split behind URLs is streamed instead).

Both decode through the one clip-reading core, :func:`cjepa.data.samples.decode_sample`.

Bad data never stops a run: a sample with a missing or corrupt component, an undecodable or empty video, a
meta json without a required field, a shard truncated mid-way or unreachable (a URL) is skipped, counted
(``loader.skipped``) and logged once on the ``cjepa.data`` logger naming shard (path or URL)
and key. Problems that make the data unusable as a
whole (no manifest, missing shard files, an empty split, fewer samples than workers, a pass in which nothing
decodes) are errors raised before training starts or as soon as they are known.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from cjepa.data.clips import mix_seed
from cjepa.data.samples import BadSample, ClipLoaderBase, ClipSpec, collate_clips, decode_sample, identity, sample_meta
from cjepa.data.shard_reader import Entry, count_samples, read_entry, read_shard, resampled_shards, video_entries
from cjepa.data.shards import ShardError, SplitInfo, open_split

log = logging.getLogger("cjepa.data")


class DataError(RuntimeError):
    """The data as a whole cannot feed training (everything undecodable, too few samples for the workers)."""


# --------------------------------------------------------------------------------------------- samples


def decode_clips(raw: dict, *, clip: ClipSpec, image_size: Optional[Sequence[int]], with_masks: bool, seed: int,
                 pass_: int,
                 decode_threads: int = 1) -> list[dict]:
    """A raw webdataset sample -> its clips ``{frames (T,3,h,w) f32, masks (T,h,w) i16?, key, frame_index (T,)}``."""
    meta = sample_meta(raw)
    starts = clip.starts(meta["num_frames"], raw["__key__"], seed, pass_)
    if not starts:
        raise BadSample("too_short", f"video has {meta['num_frames']} frames, a clip spans {clip.span}")
    clips = [np.arange(s, s + clip.span, clip.stride) for s in starts]
    return decode_sample(raw, clips, meta=meta, image_size=image_size, with_masks=with_masks, threads=decode_threads)


# --------------------------------------------------------------------------------------------- clip stream


class ClipStream(IterableDataset):
    """The per-worker batch stream of :class:`VideoClipLoader` (runs inside DataLoader workers)."""

    def __init__(self, split: SplitInfo, *, batch_size: int, clip: ClipSpec, image_size, with_masks: bool, train: bool,
                 seed: int,
                 rank: int, world_size: int, num_workers: int, shuffle_buffer: int, decode_threads: int,
                 positions: dict[int, tuple[int, int, int]], rotation: int, resampled: bool = False):
        self.shards = split.shards
        self.batch_size, self.clip, self.image_size, self.with_masks = batch_size, clip, image_size, with_masks
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.num_workers = max(1, num_workers)
        self.shuffle_buffer, self.decode_threads = shuffle_buffer, decode_threads
        self.positions, self.rotation = positions, rotation
        self.resampled = resampled and train

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
        if self.resampled:  # each worker draws its share of a pass with replacement, from (seed, pass, worker)
            mine = resampled_shards(self.shards, -(-len(self.shards) // G), seed=mix_seed(self.seed, pass_, g, 31))
            stream = (s for shard in mine for s in read_shard(shard, report))
        elif len(self.shards) >= G:
            order = self.shard_order(pass_)
            mine = [self.shards[order[j]] for j in range(g, len(order), G)]
            stream = (s for shard in mine for s in read_shard(shard, report))
        else:  # fewer shards than workers: everyone reads everything, keeps every G-th sample
            stream = self._strided(self.shard_order(pass_), g, G, report)
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
                    clips = decode_clips(raw, clip=self.clip, image_size=self.image_size, with_masks=self.with_masks,
                                         seed=self.seed,
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
                                f"fewer samples than rank x workers, or no shard readable? "
                                f"({len(self.shards)} shard(s); last problems: {[b[:3] for b in bad[-3:]]})")
            if good == 0 and emitted > skip_raw:
                raise DataError(f"global worker {g}: none of the {emitted - skip_raw} samples of pass {pass_} could be "
                                "used; "
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


class VideoClipLoader(ClipLoaderBase):
    """Batches of decoded clips from a split of video shards (the CPU path of the decoded clip batch contract).

    Iterating yields ``batches_per_epoch`` batches (training) or every clip once (``train=False``), each
    ``{"frames": (B, T, 3, H, W) float32, "masks": (B, T, H, W) int16 (when the split has masks), "keys": [str],
    "frame_index": (B, T) int64}``. ``skipped`` counts unusable samples by reason.

    ``resampled`` (training only): each pass, every global worker draws its share of shards with replacement
    (from seed, pass and worker) instead of taking its part of a permutation: the stream webdataset calls
    resampled, for shard lists too large or too unevenly sized to cut into exact epochs. Shards behind URLs have
    no manifest, so their sample count is unknown: training over them needs ``batches_per_epoch``.
    """

    def __init__(self, split: SplitInfo | str, *, batch_size: int = 32, clip: ClipSpec = ClipSpec(),
                 image_size=(196, 196),
                 with_masks: Optional[bool] = None, train: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1,
                 num_workers: int = 0, shuffle_buffer: int = 64, decode_threads: int = 1,
                 batches_per_epoch: Optional[int] = None,
                 pin_memory: bool = False, timeout_s: float = 600.0, resampled: bool = False):
        super().__init__()
        self.split = split if isinstance(split, SplitInfo) else open_split(split)
        for problem in self.split.problems:
            log.warning("%s", problem)
        if with_masks is None:
            with_masks = self.split.has_masks
        self.batch_size, self.clip, self.image_size, self.with_masks = batch_size, clip, image_size, with_masks
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.num_workers, self.shuffle_buffer, self.decode_threads = num_workers, shuffle_buffer, decode_threads
        self.pin_memory, self.timeout_s, self.resampled = pin_memory, timeout_s, resampled and train
        self.layout = [world_size, max(1, num_workers)]
        self.num_samples = self._count_samples()
        self.batches_per_epoch = batches_per_epoch or self._epoch_batches()
        self.positions: dict[int, tuple[int, int, int]] = {}
        self.next_worker = 0
        self._it: Optional[Iterator] = None

    def _count_samples(self) -> Optional[int]:
        """Samples in the split (None where shards behind URLs leave it unknown); ShardError when there are fewer
        than workers."""
        counts = [count_samples(s) for s in self.split.shards]
        if None in counts:
            return None
        total = sum(counts)
        G = self.world_size * max(1, self.num_workers)
        if total == 0:
            raise ShardError(f"split {self.split.name!r}: no samples")
        if total < G:
            raise ShardError(f"split {self.split.name!r} has {total} samples, fewer than world_size x workers = {G}")
        return total

    def _epoch_batches(self) -> int:
        if self.num_samples is None:
            if self.train:
                raise ShardError(f"split {self.split.name!r} is read from URLs, so its sample count is unknown: set "
                                 f"data.batches_per_epoch (batches per rank and epoch)")
            return 0  # evaluation reads every sample once, whatever the count
        per_video = self.clip.clips_per_video if self.clip.sampling == "random" else 1
        return max(1, (self.num_samples * per_video) // (self.world_size * self.batch_size))

    def _loader(self) -> DataLoader:
        ds = ClipStream(self.split, batch_size=self.batch_size, clip=self.clip, image_size=self.image_size,
                        with_masks=self.with_masks,
                        train=self.train, seed=self.seed, rank=self.rank, world_size=self.world_size,
                        num_workers=self.num_workers,
                        shuffle_buffer=self.shuffle_buffer, decode_threads=self.decode_threads,
                        positions=dict(self.positions),
                        rotation=self.next_worker, resampled=self.resampled)
        # Its own generator: creating a DataLoader iterator otherwise draws from the global torch RNG, so a resumed
        # run (which creates it at another step) would shift the dropout masks of an uninterrupted one.
        kw: dict[str, Any] = {"batch_size": None, "num_workers": self.num_workers, "pin_memory": self.pin_memory,
                              "generator": torch.Generator()}
        if self.num_workers > 0:
            kw.update(timeout=self.timeout_s, prefetch_factor=2)
        return DataLoader(ds, **kw)

    def _consume(self, item: dict) -> Optional[dict]:
        for shard, key, reason, detail, count in item.pop("_bad", []):
            self.count_bad(shard, key, reason, detail, count)
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

    def state_dict(self) -> dict:
        return {"positions": {str(k): list(v) for k, v in self.positions.items()}, "next_worker": self.next_worker,
                "layout": self.layout, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        restart = self._max_pass(state) + 1
        if self.same_layout(state, restart):
            self.positions = {int(k): tuple(v) for k, v in state["positions"].items()}
            self.next_worker = int(state.get("next_worker", 0))
        else:
            self.positions = {g: (restart, 0, 0) for g in range(self.world_size * max(1, self.num_workers))}
            self.next_worker = 0
        self._it = None

    @staticmethod
    def _max_pass(state: dict) -> int:
        return max([int(v[0]) for v in state.get("positions", {}).values()] or [0])

    def close(self) -> None:
        """Stop the DataLoader workers now (the DALI loader has the same method, so callers close either kind)."""
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


def build_clip_loader(data_cfg, split: str, *, train: bool = True, rank: int = 0, world_size: int = 1, seed: int = 0):
    """The clip loader a config asks for (``data.decoder``: pyav -> :class:`VideoClipLoader`, dali -> DALI)."""
    clip = ClipSpec(data_cfg.clip_frames, data_cfg.clip_stride, data_cfg.clip_sampling if train else "chunks",
                    data_cfg.clips_per_video)
    if not data_cfg.shards:
        raise ShardError("data.shards is empty: point it at a directory written by `cjepa data world|clevrer`, "
                         "or at shard URLs")
    info = open_split(data_cfg.shards, split)
    with_masks = None if data_cfg.with_masks else False
    batches = data_cfg.batches_per_epoch or None
    if data_cfg.decoder == "dali":
        info.require_local("data.decoder=dali (its reader opens files by their indexes; "
                           "URLs stream with data.decoder=pyav)")
        if data_cfg.resampled:
            raise ShardError("data.resampled=true is a data.decoder=pyav feature (DALI's reader reads exact epochs)")
        from cjepa.data.dali import DaliClipLoader  # DALI is optional: loaded only for data.decoder=dali

        return DaliClipLoader(info, batch_size=data_cfg.video_batch_size, clip=clip, image_size=data_cfg.image_size,
                              with_masks=with_masks,
                              train=train, seed=seed, rank=rank, world_size=world_size, decode=data_cfg.dali_decode,
                              shuffle_buffer=data_cfg.shuffle_buffer, batches_per_epoch=batches)
    log.info("video clips: CPU pipeline (PyAV), %d DataLoader workers, split %s", data_cfg.num_workers, info.name)
    return VideoClipLoader(info, batch_size=data_cfg.video_batch_size, clip=clip, image_size=data_cfg.image_size,
                           with_masks=with_masks,
                           train=train, seed=seed, rank=rank, world_size=world_size, num_workers=data_cfg.num_workers,
                           shuffle_buffer=data_cfg.shuffle_buffer, decode_threads=data_cfg.decode_threads,
                           batches_per_epoch=batches, resampled=data_cfg.resampled)


# --------------------------------------------------------------------------------------------- whole videos


def whole_video(raw: dict, *, image_size, stride: int, with_masks: bool, decode_threads: int):
    """A raw sample -> ``(key, frames (T, 3, h, w) f32, masks (T, h, w) i16 or None, meta)`` at frames 0, stride, ..."""
    meta = sample_meta(raw)
    (item,) = decode_sample(raw, [np.arange(0, meta["num_frames"], stride)], meta=meta, image_size=image_size,
                            with_masks=with_masks, threads=decode_threads)
    return raw["__key__"], item["frames"], item.get("masks"), meta


class _VideoDataset(Dataset):
    def __init__(self, entries: list[Entry], image_size, stride: int, with_masks: bool, decode_threads: int):
        self.entries, self.image_size, self.stride = entries, image_size, stride
        self.with_masks, self.decode_threads = with_masks, decode_threads

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        e = self.entries[i]
        try:
            return whole_video(read_entry(e), image_size=self.image_size, stride=self.stride,
                               with_masks=self.with_masks, decode_threads=self.decode_threads)
        except BadSample as err:
            return ("__bad__", e.shard.name, e.key, err.reason, err.detail)


def iter_videos(split: SplitInfo | str, *, image_size=(196, 196), stride: int = 1, with_masks: Optional[bool] = None,
                rank: int = 0,
                world_size: int = 1, num_workers: int = 0, decode_threads: int = 1, stats: Optional[Counter] = None
                ) -> Iterator[tuple[str, torch.Tensor, Optional[torch.Tensor], dict]]:
    """Whole videos for extraction: ``(key, frames (T, 3, h, w) f32, masks (T, h, w) i16 or None, meta)`` in sorted key
    order.

    Frames ``0, stride, 2 stride, ...`` (stride 1 = every frame; the original extracted at stride 1 although the
    encoder trained at stride 2, Q15: choose deliberately). Rank r of W takes keys r, r+W, ... of the sorted
    list. Unusable videos are skipped, logged and counted into ``stats``. A split behind URLs cannot be sorted
    without reading it whole: it is streamed, shard by shard, and rank r takes samples r, r+W, ... of that order.
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

    if info.remote:
        yield from _streamed_videos(info, report, image_size=image_size, stride=stride, with_masks=with_masks,
                                    rank=rank, world_size=world_size, decode_threads=decode_threads)
        return
    entries = video_entries(info, report)[rank::world_size]
    if not entries:
        raise ShardError(f"split {info.name!r}: no videos for rank {rank} of {world_size}")
    ds = _VideoDataset(entries, image_size, stride, with_masks, decode_threads)
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=identity, generator=torch.Generator(),
                        **({"timeout": 600} if num_workers else {}))
    for item in loader:
        if item[0] == "__bad__":
            _, shard, key, reason, detail = item
            report(shard, key, reason, detail)
            continue
        yield item


def _streamed_videos(info: SplitInfo, report, *, image_size, stride, with_masks, rank, world_size, decode_threads):
    position = [0]

    def mine(_i: int) -> bool:
        position[0] += 1
        return (position[0] - 1) % world_size == rank

    for shard in info.shards:
        for raw in read_shard(shard, report, keep=mine):
            try:
                yield whole_video(raw, image_size=image_size, stride=stride, with_masks=with_masks,
                                  decode_threads=decode_threads)
            except BadSample as err:
                report(raw["__url__"], raw["__key__"], err.reason, err.detail)
