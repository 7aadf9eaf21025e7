"""Real CLEVRER, read as published, into the same shards as the built-in world.

Layout (what the CLEVRER zips unpack to; the flattened ``ROOT/<split>/video_XXXXX.mp4`` layout of the
original project's data guide works too)::

    ROOT/video_train/video_00000-01000/video_00000.mp4            (video_validation/, video_test/)
    ROOT/annotation_train/annotation_00000-01000/annotation_00000.json   (train and validation only)
    ROOT/questions/train.json   (or ROOT/train.json; validation.json, test.json)
    ROOT/derender_proposals/sim_00000.json   optional per-frame object masks (COCO RLE), when given

Videos are copied into the shards as they are (no re-encoding). Annotations become the sample's meta
(``object_property``, ``motion_trajectory``, ``collision``, ``scene_index``, ``video_filename``); the video's
entry of the questions file becomes ``KEY.questions.json`` (same schema as the world's). Mask proposals carry
no object ids; since CLEVRER never has two objects alike, each proposal is matched to its annotated object by
(colour, material, shape) and painted with id ``object_id + 1``. Our split names map to CLEVRER's:
train -> train, val -> validation, test -> test. Sample keys are the file stems (``video_10000``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from cjepa.data.shards import ShardWriter
from cjepa.data.video import VideoDecodeError, probe_video

log = logging.getLogger("cjepa.data")

SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
_VIDEO = re.compile(r"^video_(\d+)\.mp4$")


class ClevrerLayoutError(FileNotFoundError):
    """The directory does not look like CLEVRER (names the path that was expected)."""


def clevrer_split_name(split: str) -> str:
    if split not in SPLIT_NAMES:
        raise ValueError(f"CLEVRER split {split!r}: choose one of {sorted(SPLIT_NAMES)}")
    return SPLIT_NAMES[split]


def find_videos(root: Path, split: str) -> list[tuple[int, Path]]:
    """(scene index, path) of every video of a split, sorted by index."""
    name = clevrer_split_name(split)
    candidates = [root / f"video_{name}", root / name, root / "videos" / name]
    if split == "val":
        candidates += [root / "val", root / "video_val"]
    found: dict[int, Path] = {}
    for base in candidates:
        if base.is_dir():
            for p in base.rglob("video_*.mp4"):
                m = _VIDEO.match(p.name)
                if m:
                    found.setdefault(int(m.group(1)), p)
    if not found:
        raise ClevrerLayoutError(f"no CLEVRER videos for split {split!r} under {root} (looked in "
                                 f"{', '.join(str(c) for c in candidates)})")
    return sorted(found.items())


def annotation_paths(root: Path, split: str) -> dict[int, Path]:
    name = clevrer_split_name(split)
    out: dict[int, Path] = {}
    for base in (root / f"annotation_{name}", root / "annotations" / name, root / f"annotation_{split}"):
        if base.is_dir():
            for p in base.rglob("annotation_*.json"):
                m = re.match(r"^annotation_(\d+)\.json$", p.name)
                if m:
                    out.setdefault(int(m.group(1)), p)
    return out


def load_questions(root: Path, split: str) -> dict[int, dict]:
    """scene index -> that video's entry of CLEVRER's questions file (empty when the file is absent)."""
    name = clevrer_split_name(split)
    for p in (root / "questions" / f"{name}.json", root / f"{name}.json", root / "questions" / f"{split}.json"):
        if p.is_file():
            try:
                entries = json.loads(p.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{p}: not valid JSON ({err})") from err
            return {int(e["scene_index"]): e for e in entries}
    return {}


def proposal_paths(root: Path, masks_dir: Optional[Path]) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for base in ([masks_dir] if masks_dir else []) + [root / "derender_proposals", root / "proposals"]:
        if base is not None and base.is_dir():
            for p in base.rglob("sim_*.json"):
                m = re.match(r"^sim_(\d+)\.json$", p.name)
                if m:
                    out.setdefault(int(m.group(1)), p)
    return out


# --------------------------------------------------------------------------------------------- COCO RLE


def rle_decode(counts: str | list[int], size: list[int]) -> np.ndarray:
    """COCO run-length mask (compressed string or list of counts; column-major runs, zeros first) -> (h, w) uint8."""
    h, w = int(size[0]), int(size[1])
    runs = _rle_string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]
    flat = np.zeros(h * w, np.uint8)
    pos, value = 0, 0
    for c in runs:
        if value:
            flat[pos : pos + c] = 1
        pos += c
        value ^= 1
    if pos != h * w:
        raise ValueError(f"RLE covers {pos} pixels, mask has {h * w}")
    return flat.reshape(w, h).T


def rle_encode(mask: np.ndarray) -> dict:
    """(h, w) binary mask -> COCO compressed RLE ``{"size": [h, w], "counts": str}`` (inverse of :func:`rle_decode`)."""
    flat = np.asarray(mask, bool).T.reshape(-1).astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = [int(c) for c in np.diff(bounds)]
    if flat.size and flat[0]:
        counts = [0] + counts  # runs start with zeros
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _counts_to_rle_string([int(c) for c in counts])}


def _rle_string_to_counts(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _counts_to_rle_string(counts: list[int]) -> str:
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def proposal_masks(path: Path, objects: list[dict], num_frames: int, height: int, width: int) -> np.ndarray:
    """Instance-id maps (T, H, W) from a derender proposal file, ids matched to annotated objects by attributes."""
    data = json.loads(path.read_text())
    ids = {(o["color"], o["material"], o["shape"]): int(o["object_id"]) + 1 for o in objects}
    masks = np.zeros((num_frames, height, width), np.uint8)
    frames = data.get("frames", [])
    for i, fr in enumerate(frames):
        t = int(fr.get("frame_index", i))
        if not 0 <= t < num_frames:
            continue
        for obj in fr.get("objects", []):
            oid = ids.get((obj.get("color"), obj.get("material"), obj.get("shape")))
            if oid is None:
                continue  # a detection matching no annotated object
            m = rle_decode(obj["mask"]["counts"], obj["mask"]["size"])
            if m.shape != (height, width):
                raise ValueError(f"{path}: frame {t} mask is {m.shape}, video is {(height, width)}")
            masks[t][m > 0] = oid
    return masks


# --------------------------------------------------------------------------------------------- conversion


def iter_clevrer(root: str | os.PathLike, split: str, *, masks_dir: Optional[str] = None,
                 limit: int = 0) -> Iterator[tuple]:
    """(key, mp4 bytes, meta, masks or None, questions entry or None) per video of a split, in index order."""
    root = Path(root)
    if not root.is_dir():
        raise ClevrerLayoutError(f"CLEVRER root {root} is not a directory")
    videos = find_videos(root, split)
    if limit:
        videos = videos[:limit]
    annotations = annotation_paths(root, split)
    questions = load_questions(root, split)
    proposals = proposal_paths(root, Path(masks_dir) if masks_dir else None)
    if split != "test" and not annotations:
        log.warning("CLEVRER %s: no annotation files found under %s; samples get minimal meta", split, root)
    for index, path in videos:
        key = path.stem
        data = path.read_bytes()
        meta: dict = {"scene_index": index, "video_filename": path.name}
        if index in annotations:
            ann = json.loads(annotations[index].read_text())
            meta.update({k: ann[k] for k in ("object_property", "motion_trajectory", "collision") if k in ann})
        masks = None
        if index in proposals and "object_property" in meta:
            try:
                info = probe_video(data)
                masks = proposal_masks(proposals[index], meta["object_property"], info.num_frames, info.height,
                                       info.width)
            except (VideoDecodeError, ValueError, KeyError) as err:
                log.warning("CLEVRER %s: masks of %s left out (%s)", split, key, err)
        yield key, data, meta, masks, questions.get(index)


def convert_clevrer(root: str | os.PathLike, out_dir: str | os.PathLike, split: str, *, shard_size: int = 64,
                    masks_dir: Optional[str] = None,
                    limit: int = 0, overwrite: bool = False, progress: bool = True) -> dict:
    """Write one CLEVRER split into ``out_dir/<split>`` shards; unreadable videos are skipped and counted."""
    from tqdm import tqdm

    n_videos = len(find_videos(Path(root), split)[: limit or None])
    writer = ShardWriter(out_dir, split, shard_size=shard_size, source="clevrer", codec="h264", fps=25.0,
                         config_version="clevrer-v1",
                         generator={"name": "cjepa.data.clevrer", "root": os.path.basename(os.path.abspath(root)),
                                                                  "clevrer_split": clevrer_split_name(split),
                                                                  "limit": limit},
                         overwrite=overwrite)
    skipped: list[str] = []
    with writer, tqdm(total=n_videos, desc=f"clevrer {split}", unit="video", disable=not progress) as bar:
        for key, data, meta, masks, questions in iter_clevrer(root, split, masks_dir=masks_dir, limit=limit):
            try:
                writer.write_encoded(key, data, meta, masks, questions)
            except (VideoDecodeError, ValueError) as err:
                skipped.append(key)
                log.warning("CLEVRER %s: skipped %s (%s)", split, key, err)
            bar.update(1)
    m = writer.manifest
    return {"split": split, "videos": m["num_samples"], "skipped": len(skipped), "shards": len(m["shards"]),
            "bytes": sum(s["bytes"] for s in m["shards"]), "with_masks": m["num_with_masks"],
            "with_questions": m["num_with_questions"],
            "dir": str(writer.dir)}
