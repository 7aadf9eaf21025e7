"""Video shards: one writer for every source (built-in world, CLEVRER, Push-T), and the split manifest.

A split directory ``OUT/<split>/`` holds webdataset tar shards ``<source>-<split>-000000.tar``, a DALI/wds2idx
index beside each shard (``.idx``, format v1.2: one line per sample, ``ext offset size name`` per component),
and ``manifest.json`` (shard list, sample and frame counts, sha256 per shard, codec, fps, generator and config
version). One sample per video, keyed ``KEY``:

    KEY.mp4             H.264 (or VP9) video, yuv420p
    KEY.json            free-form metadata (object tables, trajectories, collisions; Push-T state/proprio/action)
                        plus the reserved fields key, source, split, fps, num_frames, height, width, codec
    KEY.video.i32       the video's probed facts as little-endian int32 (see :func:`encode_video_info`): format
                        version, decodable frames, height, width, codec id, mp4 size in bytes. Written so that the
                        DALI pipeline reads them with its own reader (no per-sample Python probe); shards written
                        before it existed lack it and are read through the slower probing path
    KEY.masks.npz       optional per-frame instance ids (0 = background), lossless: one zlib-compressed (H, W)
                        member per frame named "00000", "00001", ..., so a clip decompresses only its frames
    KEY.questions.json  optional CLEVRER-schema questions

Tars are written with fixed member metadata (mtime 0, uid 0) and encoders run single-threaded, so the same
inputs give byte-identical shards. A shard is written under a temporary name and renamed when complete; the
manifest is written last, so a split without manifest.json is an unfinished write and is refused by readers.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import io
import json
import os
import re
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

FORMAT = "cjepa-video-shards"
FORMAT_VERSION = 1
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+$")  # no dots: webdataset splits KEY.ext at the first dot
REQUIRED_META = ("key", "num_frames", "height", "width", "fps")
SOURCES = ("world", "clevrer", "pusht")
VIDEO_INFO_EXT = "video.i32"
COMPONENTS = ("mp4", "json", VIDEO_INFO_EXT, "masks.npz", "questions.json")
# KEY.video.i32: int32 little-endian, one value per field; DALI's webdataset reader hands it over as an INT32 tensor
VIDEO_INFO_VERSION = 1
VIDEO_INFO_FIELDS = ("version", "num_frames", "height", "width", "codec", "mp4_bytes")
CODEC_IDS = {"h264": 1, "vp9": 2, "vp8": 3, "mjpeg": 4}  # 0: any other codec


URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: "C:" is a drive, not a scheme


class ShardError(ValueError):
    """A split, shard list or manifest is unusable; raised before any training starts. Names the path."""


# --------------------------------------------------------------------------------------------- masks


def encode_masks(masks: np.ndarray) -> bytes:
    """Instance ids (T, H, W) -> npz bytes, one compressed member per frame (uint8, or uint16 above 255 ids)."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or not np.issubdtype(masks.dtype, np.integer):
        raise ValueError(f"masks must be integer (T, H, W), got {masks.dtype} {masks.shape}")
    if masks.size and (masks.min() < 0 or masks.max() > 65535):
        raise ValueError("mask ids must lie in [0, 65535]")
    dtype = np.uint8 if (masks.size == 0 or masks.max() <= 255) else np.uint16
    buf = io.BytesIO()
    np.savez_compressed(buf, **{f"{t:05d}": masks[t].astype(dtype) for t in range(masks.shape[0])})
    return buf.getvalue()


def decode_masks(data: bytes, indices: Optional[Sequence[int]] = None) -> np.ndarray:
    """npz bytes -> (len(indices), H, W) (all frames when indices is None). ValueError on a corrupt archive."""
    try:
        with np.load(io.BytesIO(data)) as npz:
            names = sorted(npz.files)
            if indices is None:
                indices = range(len(names))
            return np.stack([npz[f"{int(t):05d}"] for t in indices])
    except (KeyError, zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise ValueError(f"corrupt masks archive: {err}") from err


# --------------------------------------------------------------------------------------------- video info


def encode_video_info(mp4: bytes, info=None) -> bytes:
    """Probe an encoded video once, at write time, and pack what readers need into ``KEY.video.i32``.

    Frame count (packets, what the decoder delivers), frame size and codec come from the stream itself, not from
    the caller's meta; the byte count lets a reader notice a replaced or cut mp4 without opening it. ``info``: a
    :class:`cjepa.data.video.VideoInfo` the caller already probed.
    """
    from cjepa.data.video import probe_video  # PyAV loads only when a video is written (start-up time)

    info = info or probe_video(mp4)
    if len(mp4) >= 2**31:
        raise ValueError(f"video of {len(mp4)} bytes does not fit the int32 video info")
    values = [VIDEO_INFO_VERSION, info.num_frames, info.height, info.width, CODEC_IDS.get(info.codec, 0), len(mp4)]
    return np.asarray(values, "<i4").tobytes()


def decode_video_info(data: bytes) -> dict:
    """``KEY.video.i32`` bytes -> ``{field: int}``; ValueError when it is not a video info of this version."""
    if len(data) != 4 * len(VIDEO_INFO_FIELDS):
        raise ValueError(f"video info has {len(data)} bytes, expected {4 * len(VIDEO_INFO_FIELDS)}")
    out = dict(zip(VIDEO_INFO_FIELDS, (int(v) for v in np.frombuffer(data, "<i4"))))
    if out["version"] != VIDEO_INFO_VERSION:
        raise ValueError(f"video info version {out['version']}, this reader knows {VIDEO_INFO_VERSION}")
    return out


# --------------------------------------------------------------------------------------------- samples


@dataclass
class EncodedSample:
    """One video ready to go into a tar: component bytes by extension, plus what the manifest counts."""

    key: str
    files: dict[str, bytes]
    num_frames: int
    height: int
    width: int


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValueError(f"sample key {key!r} must match {KEY_PATTERN.pattern} (no dots, no slashes)")
    return key


def _merge_meta(meta: Optional[dict], reserved: dict) -> dict:
    meta = dict(meta or {})
    for k, v in reserved.items():
        if k in meta and meta[k] != v:
            raise ValueError(f"meta[{k!r}]={meta[k]!r} contradicts the writer's value {v!r} (reserved field)")
    meta.update(reserved)
    return meta


def _json_bytes(obj: Any, what: str) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not JSON-serialisable (numpy values must be converted, no NaN): {err}") from err


def build_sample(
    key: str,
    frames: np.ndarray,
    meta: Optional[dict],
    masks: Optional[np.ndarray] = None,
    questions: Any = None,
    *,
    source: str,
    split: str,
    fps: float,
    codec: str = "h264",
    crf: int = 18,
    gop: int = 16,
) -> EncodedSample:
    """Encode one video's frames (and masks, questions) into sample components. Safe to call in worker processes."""
    from cjepa.data.video import encode_video  # PyAV loads only when a video is written (start-up time)

    check_key(key)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{key}: frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    T, H, W, _ = frames.shape
    if masks is not None and np.asarray(masks).shape != (T, H, W):
        raise ValueError(f"{key}: masks shape {np.asarray(masks).shape} != frames (T, H, W) {(T, H, W)}")
    files = {"mp4": encode_video(frames, fps=fps, codec=codec, crf=crf, gop=gop)}
    files[VIDEO_INFO_EXT] = encode_video_info(files["mp4"])
    reserved = {"key": key, "source": source, "split": split, "fps": float(fps), "num_frames": T, "height": H,
                "width": W, "codec": codec}
    files["json"] = _json_bytes(_merge_meta(meta, reserved), f"{key}: meta")
    if masks is not None:
        files["masks.npz"] = encode_masks(np.asarray(masks))
    if questions is not None:
        files["questions.json"] = _json_bytes(questions, f"{key}: questions")
    return EncodedSample(key, files, T, H, W)


def build_encoded_sample(
    key: str,
    video: bytes,
    meta: Optional[dict],
    masks: Optional[np.ndarray] = None,
    questions: Any = None,
    *,
    source: str,
    split: str,
    fps: Optional[float] = None,
) -> EncodedSample:
    """Pass an already-encoded mp4 through unchanged (no re-encoding loss); size and frame count are probed."""
    from cjepa.data.video import probe_video  # PyAV loads only when a video is written (start-up time)

    check_key(key)
    info = probe_video(video)
    fps = float(fps if fps else info.fps)
    if masks is not None and np.asarray(masks).shape[1:] != (info.height, info.width):
        raise ValueError(f"{key}: masks frame size {np.asarray(masks).shape[1:]} != video {(info.height, info.width)}")
    reserved = {"key": key, "source": source, "split": split, "fps": fps, "num_frames": info.num_frames,
                "height": info.height, "width": info.width, "codec": info.codec}
    files = {"mp4": bytes(video), "json": _json_bytes(_merge_meta(meta, reserved), f"{key}: meta"),
             VIDEO_INFO_EXT: encode_video_info(video, info)}
    if masks is not None:
        files["masks.npz"] = encode_masks(np.asarray(masks))
    if questions is not None:
        files["questions.json"] = _json_bytes(questions, f"{key}: questions")
    return EncodedSample(key, files, info.num_frames, info.height, info.width)


# --------------------------------------------------------------------------------------------- index


def write_index(tar_path: Path, idx_path: Path) -> list[dict]:
    """Write the wds2idx v1.2 index of a tar (what DALI's fn.readers.webdataset reads); return its samples.

    Each sample: ``{"key", "components": {ext: (data offset, size)}}``. Members are grouped by key in tar
    order, exactly as wds2idx groups them.
    """
    samples: list[dict] = []
    with tarfile.open(tar_path, "r:") as tf:
        for m in tf:
            if not m.isreg():
                continue
            name = m.name.rsplit("/", 1)[-1]
            key, _, ext = name.partition(".")
            if not key:
                continue
            if not samples or samples[-1]["key"] != key:
                samples.append({"key": key, "components": {}, "names": []})
            samples[-1]["components"][ext] = (m.offset_data, m.size)
            samples[-1]["names"].append(m.name)
    lines = [f"v1.2 {len(samples)}"]
    for s in samples:
        lines.append(" ".join(f"{ext} {off} {size} {name}" for (ext, (off, size)),
                              name in zip(s["components"].items(), s["names"])))
    tmp = idx_path.with_name(idx_path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, idx_path)
    for s in samples:
        s.pop("names")
    return samples


def read_index(idx_path: Path) -> list[dict]:
    """Parse a v1.2 index into ``[{"key", "components": {ext: (offset, size)}}]``."""
    try:
        lines = Path(idx_path).read_text().splitlines()
        head = lines[0].split()
        if head[0] != "v1.2":
            raise ValueError(f"unsupported index version {head[0]!r}")
        samples = []
        for line in lines[1 : 1 + int(head[1])]:
            parts = line.split()
            comps = {}
            key = None
            for i in range(0, len(parts), 4):
                ext, off, size, name = parts[i : i + 4]
                key = name.rsplit("/", 1)[-1].partition(".")[0]
                comps[ext] = (int(off), int(size))
            samples.append({"key": key, "components": comps})
        if len(samples) != int(head[1]):
            raise ValueError(f"header says {head[1]} samples, found {len(samples)}")
        return samples
    except (OSError, IndexError, ValueError) as err:
        raise ShardError(f"{idx_path}: unreadable shard index ({err})") from err


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            b = fh.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------- writer


class ShardWriter:
    """Write one split of video samples into webdataset tar shards plus indexes and ``manifest.json``.

    ``shard_size`` is videos per shard. ``write`` encodes frames here; ``add`` takes samples encoded elsewhere
    (worker processes call :func:`build_sample`); ``write_encoded`` passes an existing mp4 through. ``meta``
    is free-form JSON; the reserved fields (key, source, split, fps, num_frames, height, width, codec) are set
    by the writer and must not contradict it.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        split: str,
        *,
        shard_size: int = 64,
        source: str = "world",
        codec: str = "h264",
        fps: float = 25.0,
        config_version: str = "",
        generator: Optional[dict] = None,
        crf: int = 18,
        gop: int = 16,
        overwrite: bool = False,
    ):
        if source not in SOURCES:
            raise ValueError(f"source {source!r} must be one of {SOURCES}")
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        if not split or not KEY_PATTERN.match(split):
            raise ValueError(f"split name {split!r} must match {KEY_PATTERN.pattern}")
        self.dir = Path(out_dir) / split
        self.split, self.source, self.codec, self.fps = split, source, codec, float(fps)
        self.shard_size, self.crf, self.gop = shard_size, crf, gop
        self.config_version, self.generator = config_version, dict(generator or {})
        if (self.dir / "manifest.json").exists() or any(self.dir.glob("*.tar")):
            if not overwrite:
                raise ShardError(f"{self.dir} already holds shards; pass overwrite=True (CLI: --overwrite) to replace "
                                 "them")
            for p in list(self.dir.glob("*.tar")) + list(self.dir.glob("*.idx")) + [self.dir / "manifest.json"]:
                p.unlink(missing_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._keys: set[str] = set()
        self._shards: list[dict] = []
        self._tar: Optional[tarfile.TarFile] = None
        self._tar_tmp: Optional[Path] = None
        self._in_shard: list[str] = []
        self._frames_total = 0
        self._counts = {"masks": 0, "questions": 0, "video_info": 0}
        self._sizes: dict[str, int] = {}
        self.closed = False

    # -- context manager
    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep the finished shards, drop the partial one; no manifest marks the split unfinished
            self._abort_partial()

    # -- writing
    def write(self, key: str, frames: np.ndarray, meta: Optional[dict] = None, masks: Optional[np.ndarray] = None,
              questions: Any = None) -> None:
        self.add(build_sample(key, frames, meta, masks, questions, source=self.source, split=self.split, fps=self.fps,
                              codec=self.codec, crf=self.crf, gop=self.gop))

    def write_encoded(self, key: str, video: bytes, meta: Optional[dict] = None, masks: Optional[np.ndarray] = None,
                      questions: Any = None) -> None:
        self.add(build_encoded_sample(key, video, meta, masks, questions, source=self.source, split=self.split,
                                      fps=self.fps))

    def add(self, sample: EncodedSample) -> None:
        if self.closed:
            raise RuntimeError("ShardWriter is closed")
        check_key(sample.key)
        if sample.key in self._keys:
            raise ValueError(f"duplicate sample key {sample.key!r} in split {self.split!r}")
        if set(sample.files) - set(COMPONENTS) or "mp4" not in sample.files or "json" not in sample.files:
            raise ValueError(f"{sample.key}: components {sorted(sample.files)}; need mp4 and json, allowed "
                             f"{COMPONENTS}")
        if self._tar is None:
            self._open_shard()
        for ext in COMPONENTS:  # fixed member order: mp4, json, video info, masks, questions
            if ext in sample.files:
                self._add_member(f"{sample.key}.{ext}", sample.files[ext])
        self._keys.add(sample.key)
        self._in_shard.append(sample.key)
        self._frames_total += sample.num_frames
        self._counts["masks"] += "masks.npz" in sample.files
        self._counts["video_info"] += VIDEO_INFO_EXT in sample.files
        self._counts["questions"] += "questions.json" in sample.files
        size = f"{sample.height}x{sample.width}"
        self._sizes[size] = self._sizes.get(size, 0) + 1
        if len(self._in_shard) >= self.shard_size:
            self._close_shard()

    def close(self) -> dict:
        """Finish the last shard and write manifest.json; returns the manifest."""
        if self.closed:
            return self.manifest
        if self._tar is not None:
            self._close_shard()
        if not self._shards:
            raise ShardError(f"{self.dir}: no samples were written; an empty split is not a split")
        self.manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "split": self.split,
            "codec": self.codec,
            "fps": self.fps,
            "config_version": self.config_version,
            "generator": self.generator,
            "num_samples": len(self._keys),
            "num_frames": self._frames_total,
            "num_with_masks": self._counts["masks"],
            "num_with_questions": self._counts["questions"],
            "num_with_video_info": self._counts["video_info"],
            "frame_sizes": self._sizes,
            "shard_size": self.shard_size,
            "shards": self._shards,
            "created_unix": time.time(),
        }
        tmp = self.dir / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1))
        os.replace(tmp, self.dir / "manifest.json")
        self.closed = True
        return self.manifest

    # -- internals
    def _shard_name(self) -> str:
        return f"{self.source}-{self.split}-{len(self._shards):06d}"

    def _open_shard(self) -> None:
        self._tar_tmp = self.dir / (self._shard_name() + ".tar.tmp")
        self._tar = tarfile.open(self._tar_tmp, "w", format=tarfile.GNU_FORMAT)
        self._in_shard = []

    def _add_member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def _close_shard(self) -> None:
        self._tar.close()
        name = self._shard_name()
        tar_path, idx_path = self.dir / f"{name}.tar", self.dir / f"{name}.idx"
        os.replace(self._tar_tmp, tar_path)
        samples = write_index(tar_path, idx_path)
        assert [s["key"] for s in samples] == self._in_shard, "index does not match the samples written"
        self._shards.append({
            "file": tar_path.name,
            "index": idx_path.name,
            "num_samples": len(self._in_shard),
            "bytes": tar_path.stat().st_size,
            "sha256": sha256_file(tar_path),
            "first_key": self._in_shard[0],
            "last_key": self._in_shard[-1],
        })
        self._tar, self._tar_tmp, self._in_shard = None, None, []

    def _abort_partial(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar_tmp.unlink(missing_ok=True)
            self._tar = None


# --------------------------------------------------------------------------------------------- reading a split


@dataclass
class ShardInfo:
    path: Optional[Path]  # a local tar; None for a shard behind a URL
    index_path: Optional[Path]
    num_samples: Optional[int]  # from the manifest (None for a bare shard list)
    bytes: Optional[int] = None
    sha256: Optional[str] = None
    url: Optional[str] = None  # http(s)://..., pipe:CMD, ...: streamed only (no index, no random access)

    @property
    def name(self) -> str:
        """Where the shard lives, as errors and bad-sample reports name it."""
        return str(self.path) if self.path is not None else str(self.url)


@dataclass
class SplitInfo:
    """A validated list of shards (from a manifest, or a bare list/glob of tars)."""

    name: str
    shards: list[ShardInfo]
    manifest: Optional[dict] = None
    problems: list[str] = field(default_factory=list)  # non-fatal: truncated shards (their bad samples are skipped)

    @property
    def num_samples(self) -> Optional[int]:
        return None if self.manifest is None else int(self.manifest["num_samples"])

    @property
    def has_masks(self) -> bool:
        return bool(self.manifest) and self.manifest.get("num_with_masks", 0) == self.manifest.get("num_samples", -1)

    @property
    def remote(self) -> bool:
        return any(s.path is None for s in self.shards)

    def require_local(self, what: str) -> None:
        """ShardError unless every shard is a local file (``what`` needs seeks or shard indexes)."""
        if self.remote:
            first = next(s.url for s in self.shards if s.path is None)
            raise ShardError(f"split {self.name!r} is read from URLs (e.g. {first}); {what} needs local shards: "
                             f"copy them to a folder and point at it")


def open_split(spec: str | os.PathLike | Sequence[str], split: Optional[str] = None, *,
               verify_checksums: bool = False) -> SplitInfo:
    """Resolve and validate the shards of a split; raises :class:`ShardError` before any data is decoded.

    ``spec`` is a split directory holding manifest.json, a shard root with ``split`` naming a subdirectory,
    a glob or brace pattern of tar files, an explicit list of tar paths, or shard URLs (:func:`expand_urls`:
    ``https://host/{split}-{000000..000099}.tar``, ``pipe:CMD``, or a list of them), which are streamed and
    carry no manifest (sample counts unknown). Missing files, an empty list, an
    unfinished write (no manifest) or a manifest from another format are errors. A shard shorter than its
    manifest size is reported in ``problems`` (it is truncated: readers skip what is unreadable and count it).
    """
    if isinstance(spec, (list, tuple)):
        if any(is_url(str(s)) for s in spec):
            return _split_from_urls([str(s) for s in spec], name=split or "shards")
        return _split_from_list([str(s) for s in spec], name=split or "shards")
    if is_url(str(spec)):
        return _split_from_urls(expand_urls(str(spec), split), name=split or "shards")
    path = Path(spec)
    if split is not None and (path / split).is_dir():
        path = path / split
    if path.is_dir():
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            tars = sorted(path.glob("*.tar"))
            hint = " (shards exist: the writer did not finish)" if tars else ""
            raise ShardError(f"{path}: no manifest.json{hint}; write the split with `cjepa data world|clevrer`")
        return _split_from_manifest(path, manifest_path, verify_checksums)
    text = str(spec)
    if any(c in text for c in "*?[{"):
        import braceexpand

        files = sorted({f for pat in braceexpand.braceexpand(text) for f in globlib.glob(pat)})
        if not files:
            raise ShardError(f"shard pattern {text!r} matches no file")
        return _split_from_list(files, name=split or path.parent.name)
    if path.suffix == ".tar":
        return _split_from_list([text], name=split or path.parent.name)
    raise ShardError(f"{spec}: not a split directory, a .tar shard, or a shard pattern"
                     + (f" (no subdirectory {split!r})" if split else ""))


def is_url(text: str) -> bool:
    """A shard location with a scheme (``https://``, ``pipe:``, ``gs://``, ...); ``file:`` URLs and paths are local."""
    m = URL_SCHEME.match(text)
    return m is not None and m.group(1).lower() != "file"


def expand_urls(spec: str, split: Optional[str]) -> list[str]:
    """A URL pattern -> its shard URLs: ``{split}`` becomes the split's name, then braces expand
    (``https://host/{split}-{000000..000099}.tar``), in order."""
    import braceexpand

    return list(braceexpand.braceexpand(spec.replace("{split}", split) if split else spec))


def _split_from_urls(urls: list[str], name: str) -> SplitInfo:
    """Shards behind URLs: nothing is opened here (a missing one counts as an unreadable shard when it is read);
    schemes nothing can open are errors now."""
    from webdataset.gopen import gopen_schemes

    if not urls:
        raise ShardError("empty shard URL list")
    for url in urls:
        scheme = URL_SCHEME.match(url).group(1).lower() if URL_SCHEME.match(url) else ""
        if scheme not in ("http", "https") and scheme not in gopen_schemes:
            raise ShardError(f"shard {url!r}: no reader for URLs of scheme {scheme or '(none)'!r}; use http(s)://, "
                             f"a local path, or pipe:CMD with a command that writes the shard to stdout "
                             f"(pipe:aws s3 cp s3://... -)")
        if "{split}" in url:
            raise ShardError(f"shard {url!r}: {{split}} stands for a split name and none was given")
    return SplitInfo(name, [ShardInfo(None, None, None, url=u) for u in urls], None, [])


def _split_from_manifest(path: Path, manifest_path: Path, verify_checksums: bool) -> SplitInfo:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ShardError(f"{manifest_path}: unreadable manifest ({err})") from err
    if manifest.get("format") != FORMAT:
        raise ShardError(f"{manifest_path}: format {manifest.get('format')!r} is not {FORMAT!r}")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ShardError(f"{manifest_path}: format version {manifest['format_version']} is newer than this reader "
                         f"({FORMAT_VERSION})")
    entries = manifest.get("shards") or []
    if not entries or not manifest.get("num_samples"):
        raise ShardError(f"{manifest_path}: the split is empty (no shards / no samples)")
    shards, problems, missing = [], [], []
    for e in entries:
        p = path / e["file"]
        if not p.is_file():
            missing.append(str(p))
            continue
        idx = path / e["index"] if e.get("index") and (path / e["index"]).is_file() else None
        info = ShardInfo(p, idx, int(e["num_samples"]), int(e["bytes"]), e.get("sha256"))
        size = p.stat().st_size
        if size < info.bytes:
            problems.append(f"{p}: truncated ({size} of {info.bytes} bytes); unreadable samples will be skipped")
        elif size != info.bytes:
            problems.append(f"{p}: size {size} differs from the manifest's {info.bytes}")
        if verify_checksums and info.sha256 and size == info.bytes and sha256_file(p) != info.sha256:
            problems.append(f"{p}: sha256 differs from the manifest")
        shards.append(info)
    if missing:
        raise ShardError(f"{manifest_path}: {len(missing)} shard(s) listed but missing: {', '.join(missing[:5])}")
    return SplitInfo(manifest.get("split", path.name), shards, manifest, problems)


def _split_from_list(files: list[str], name: str) -> SplitInfo:
    if not files:
        raise ShardError("empty shard list")
    shards = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise ShardError(f"shard {p} does not exist")
        if p.stat().st_size == 0:
            raise ShardError(f"shard {p} is empty (0 bytes)")
        idx = p.with_suffix(".idx")
        shards.append(ShardInfo(p, idx if idx.is_file() else None, None))
    return SplitInfo(name, shards, None, [])


def load_json_component(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{what}: invalid JSON ({err})") from err


def check_meta(meta: Any) -> dict:
    """The reader's contract for KEY.json: a mapping with the required fields of the right types."""
    if not isinstance(meta, dict):
        raise ValueError("meta json is not an object")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"meta json lacks required field(s) {missing}")
    for k in ("num_frames", "height", "width"):
        if not isinstance(meta[k], int) or isinstance(meta[k], bool) or meta[k] <= 0:
            raise ValueError(f"meta field {k}={meta[k]!r} must be a positive integer")
    return meta
