"""Slot extraction: encode every video of a source once into the slot store (section 4.8, done deterministically).

For each split, videos come from :meth:`VideoSource.iter_videos` in sorted key order; each is encoded in one pass
over all its frames (taken at ``encoder.extract.frame_stride``) by the same fused encoder as training, so resize and
normalisation match training exactly (Q15). Each video's slot-init noise comes from its own generator seeded by
``(encoder.extract.seed, crc32(key))``, so a video's slots do not depend on the order, the batch it shares, or a
resume (the original drew from the global RNG over an unsorted glob, Q15).

Stored per video: slots (T, S, D) and, as per-frame extras,

* ``object_ids`` (T, S): when the source has ground-truth instance masks, the GT object id each slot holds
  (:func:`cjepa.eval.segmentation.slot_object_ids`; -1 = no object). The counterfactual VQA protocol uses it to
  find the slot of object X. Stored as float32 like every extra (ids are small integers, exact).
* ``proprio``, ``action``, ``state``: passed through from the video's meta when present (Push-T), subsampled
  with the same stride. A shard's ``action`` has T-1 rows (action t moves frame t to t+1); the store gets a NaN
  last row, so that its rows are frames, as in the state-slot store.

Resumable: videos already in the store are skipped, and the store's producer record (encoder config and
checkpoint hash) must match, so a resumed extraction never mixes encoders. Optional export to the original
pickle ``{split: {video: (T, S, D)}}``.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from pathlib import Path
from typing import Iterator, Mapping, Optional

import numpy as np
import torch
from tqdm import tqdm

from cjepa.config import to_dict
from cjepa.data.clips import VideoItem, VideoSource, mix_seed
from cjepa.data.slot_store import SlotSplit, SlotStoreWriter, export_pickle
from cjepa.eval.segmentation import fg_ari, hard_slot_ids, hungarian_bindings, slot_object_ids, swap_rate
from cjepa.models.object_encoder import first_frame_cues
from cjepa.utils.checkpoint import resolve_checkpoint

PASSTHROUGH_EXTRAS = ("proprio", "action", "state")


def video_seed(seed: int, key: str) -> int:
    """The slot-init seed of one video: independent of every other video."""
    return mix_seed(seed, zlib.crc32(key.encode("utf-8")))


def file_sha256(path: str | os.PathLike, limit: Optional[int] = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:limit] if limit else h.hexdigest()


def producer_record(enc_cfg, checkpoint: str = "") -> dict:
    """What produced a store: encoder kind, sizes, options and the weights' hash (checked on resume).

    The checkpoint enters by content hash, not path, so moving the weights does not block a resume; the
    checkpoint option itself is dropped from the config copy for the same reason.
    """
    cfg = to_dict(enc_cfg)
    cfg.pop("data", None)
    ex = cfg.pop("extract", {})
    cfg.pop("vis_every", None)
    cfg.pop("checkpoint", None)
    cfg.get("backbone", {}).pop("weights", None)  # the weights are in the checkpoint, identified by its hash
    ckpt = checkpoint or enc_cfg.checkpoint
    record = {"encoder": cfg, "frame_stride": ex.get("frame_stride", 1), "seed": ex.get("seed", 0)}
    if ckpt:
        p = Path(ckpt)
        f = p / "model.pt" if p.is_dir() and (p / "model.pt").is_file() else p
        if f.is_dir():
            f = resolve_checkpoint(f) / "model.pt"
        record["checkpoint_sha256"] = file_sha256(f, 16) if f.is_file() else "unknown"
    return record


def _as_item(obj) -> VideoItem:
    if isinstance(obj, VideoItem):
        return obj
    key, frames, masks, meta = obj  # the per-video iterator contract: (key, frames, masks | None, meta)
    return VideoItem(key, frames, masks, dict(meta or {}))


def _batches(items: Iterator, batch_videos: int, stride: int) -> Iterator[list[VideoItem]]:
    """Group consecutive videos of equal (strided) length, up to batch_videos per group."""
    group: list[VideoItem] = []
    for obj in items:
        it = _as_item(obj)
        T = len(range(0, it.frames.shape[0], stride))
        if group and (len(group) == batch_videos or len(range(0, group[0].frames.shape[0], stride)) != T):
            yield group
            group = []
        group.append(it)
    if group:
        yield group


def _extras(item: VideoItem, stride: int, T: int) -> dict[str, np.ndarray]:
    out = {}
    for name in PASSTHROUGH_EXTRAS:
        if name in item.meta and item.meta[name] is not None:
            arr = np.asarray(item.meta[name], dtype=np.float32)
            if name == "action" and arr.ndim == 2 and arr.shape[0] == item.frames.shape[0] - 1:
                # Shards hold the T-1 actions between frames; the store keeps one row per frame, the last NaN (no
                # action follows the last frame), as the state-slot store of `cjepa pusht` does.
                arr = np.concatenate([arr, np.full((1, arr.shape[1]), np.nan, np.float32)])
            if arr.shape[0] != item.frames.shape[0]:
                raise ValueError(
                    f"video {item.key!r}: meta {name!r} has {arr.shape[0]} rows, the video has {item.frames.shape[0]} "
                    "frames"
                )
            out[name] = arr[::stride][:T]
    return out


@torch.no_grad()
def encode_videos(model, items: list[VideoItem], *, seed: int, stride: int, device: torch.device,
                  object_ids: bool) -> list[dict]:
    """Encode a group of equal-length videos; returns per video {slots, extras, fg_ari (if masks)}."""
    frames = torch.stack([it.frames[::stride] for it in items]).to(device, non_blocking=True)  # (B, T, 3, H, W)
    if not torch.isfinite(frames).all():
        bad = [it.key for it in items if not torch.isfinite(it.frames).all()]
        raise ValueError(f"videos {bad} contain NaN or inf frames")
    gens = []
    for it in items:
        g = torch.Generator(device=device)
        g.manual_seed(video_seed(seed, it.key))
        gens.append(g)
    has_masks = object_ids and all(it.masks is not None for it in items)
    cues = None
    if getattr(model, "needs_cues", False):  # conditional SAVi starts from the first frame's objects
        missing = [it.key for it in items if it.masks is None]
        if missing:
            raise ValueError(f"encoder.savi.init=cues needs instance masks; videos {missing} have none")
        # from the CPU masks, before the transfer (first_frame_cues reads object ids on the host)
        cues = first_frame_cues(torch.stack([it.masks[0] for it in items]).cpu().long(), model.num_slots)
        cues = cues.to(device, non_blocking=True)
    out = model.encode(frames, generator=gens, masks=has_masks, cues=cues)
    slots = out.slots.float().cpu().numpy()  # (B, T, S, D)
    results = []
    S = slots.shape[2]
    for b, it in enumerate(items):
        T = slots.shape[1]
        res = {"slots": slots[b], "extras": _extras(it, stride, T)}
        if has_masks:
            gt = it.masks[::stride].to(device)  # (T, H, W)
            ids, aris = [], []
            for s in range(0, T, 16):  # bound the memory of the upsampled masks on long videos
                pred = hard_slot_ids(out.masks[b, s : s + 16], tuple(gt.shape[-2:]))  # (t, H, W)
                ids.append(slot_object_ids(gt[s : s + 16], pred, S))
                aris.append(pred)
            res["extras"]["object_ids"] = torch.cat(ids).float().cpu().numpy()
            pred = torch.cat(aris)
            v, ok = fg_ari(gt[None], pred[None], S, per="video")
            res["fg_ari"] = float(v[0]) if bool(ok[0]) else None
            res["swaps"] = swap_rate(hungarian_bindings(gt, pred, S))
        results.append(res)
    return results


def extract_split(
    model,
    source: VideoSource,
    root: str | os.PathLike,
    split: str,
    *,
    enc_cfg,
    device: torch.device,
    producer: Optional[dict] = None,
    progress: bool = True,
) -> dict:
    """Encode every video of `source` not yet in ``root/<split>``; returns a summary of this split."""
    ex = enc_cfg.extract
    writer = SlotStoreWriter(
        root, split, num_slots=enc_cfg.num_slots, slot_dim=enc_cfg.slot_dim, producer=producer,
        shard_frames=ex.shard_frames
    )
    done = [k for k in source.keys() if k in writer]
    todo = len(source) - len(done)
    t0 = time.time()
    frames = written = 0
    aris: list[float] = []
    swaps = [0, 0]  # swapped frames, comparable frames (pooled over videos)
    bar = tqdm(
        total=len(source), initial=len(done), desc=f"extract {split}", disable=not progress, dynamic_ncols=True,
        unit="video"
    )
    model.eval()
    try:
        with writer:
            for group in _batches(source.iter_videos(skip=done), ex.batch_videos, ex.frame_stride):
                for it, res in zip(
                    group,
                    encode_videos(model, group, seed=ex.seed, stride=ex.frame_stride, device=device,
                                  object_ids=ex.object_ids),
                ):
                    writer.add(it.key, res["slots"], **res["extras"])
                    frames += res["slots"].shape[0]
                    written += 1
                    if res.get("fg_ari") is not None:
                        aris.append(res["fg_ari"])
                    if "swaps" in res:
                        swaps = [swaps[0] + res["swaps"][0], swaps[1] + res["swaps"][1]]
                    bar.update(1)
    finally:
        bar.close()
    dt = time.time() - t0
    summary = {
        "split": split,
        "videos": len(source),
        "written": written,
        "skipped_existing": len(done),
        "frames": frames,
        "seconds": dt,
        "videos_per_s": written / dt if dt > 0 else 0.0,
    }
    if aris:
        summary["fg_ari"] = float(np.mean(aris))
    if swaps[1]:
        summary["swap_rate"] = swaps[0] / swaps[1]
    if todo != written:
        summary["note"] = f"{todo - written} videos were not written"
    return summary


def extract(
    model,
    sources: Mapping[str, VideoSource],
    root: str | os.PathLike,
    *,
    enc_cfg,
    device: torch.device,
    checkpoint: str = "",
    progress: bool = True,
) -> list[dict]:
    """Extract every split of `sources` into the store at `root`; export the pickle if configured."""
    producer = producer_record(enc_cfg, checkpoint)
    summaries = [
        extract_split(model, src, root, split, enc_cfg=enc_cfg, device=device, producer=producer, progress=progress)
        for split, src in sources.items()
    ]
    if enc_cfg.extract.export_pickle:
        export_pickle({split: SlotSplit(root, split) for split in sources}, enc_cfg.extract.export_pickle)
    return summaries
