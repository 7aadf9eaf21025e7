"""DALI video pipeline: the same shards and batch contract as the CPU path, with decoding on the GPU (NVDEC).

One pipeline, whatever the machine::

    fn.readers.webdataset (wds2idx indexes, shard_id = rank)  ->  prepare (python: parse meta, pick the clip's
    frames, validate the mp4)  ->  DECODE  ->  fn.resize (linear, antialiased)  ->  fn.crop_mirror_normalize
    (ImageNet, FCHW)  ->  DALIGenericIterator

Only DECODE changes:

* ``nvdec``: ``fn.decoders.video(device="mixed")``, H.264 on the GPU's video engines; frames stay on the GPU
  and reach the consumer without a host copy. The default where CUDA is available.
* ``pyav``: a ``fn.python_function`` decoding with PyAV on the CPU (DALI's CPU decoder has no H.264). This is
  how machines without a GPU run, and test, the reader, sharding and iterator of this pipeline.
* ``cpu``: DALI's own ``fn.decoders.video(device="cpu")``, for VP8/VP9/MJPEG shards (``world.codec=vp9``).

Resize and normalisation follow :func:`cjepa.data.video.preprocess_frames` (bilinear resize with
antialiasing of the uint8 frames, then mean/std); DALI's resampling kernel is its own, so the two paths agree to a small
tolerance (tested), not bit for bit. Masks go through the shared :func:`cjepa.data.video.resize_masks` and
agree exactly.

Bad data: the prepare step replaces a sample whose meta, video or masks are unusable by a tiny placeholder
video and flags it; the iterator drops flagged rows, counts them and logs shard and key. Truncated shards are
found before the pipeline starts (index entries past the end of the file) and read only up to the damage.
Each pass over a rank's samples is its own pipeline build (seed and shard rotation from (seed, pass)), so
passes are exact epochs and a resumed run replays only the reader of the current pass, without decoding.
(DALI's video decoder cannot be checkpointed, so DALI's own pipeline checkpoints are not an option.)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from cjepa.data.loader import BadSample, ClipSpec, _scan_offsets
from cjepa.data.shards import ShardError, SplitInfo, check_meta, decode_masks, open_split, read_index
from cjepa.data.video import IMAGENET_MEAN, IMAGENET_STD, VideoDecodeError, decode_frames, encode_video, probe_video, resize_masks

log = logging.getLogger("cjepa.data")

KEY_BYTES = 128
DALI_CPU_CODECS = ("vp8", "vp9", "mjpeg")


class DaliUnavailable(RuntimeError):
    """DALI (or the GPU a decode mode needs) is missing; the message says what to install or which decoder to pick."""


def require_dali(decode: str):
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as err:
        raise DaliUnavailable("data.decoder=dali needs NVIDIA DALI: pip install nvidia-dali-cuda120 (CUDA 12) or nvidia-dali-cuda130; "
                              "or use data.decoder=pyav") from err
    if decode == "nvdec" and not torch.cuda.is_available():
        raise DaliUnavailable("DALI's NVDEC video decoder needs a CUDA GPU and none is visible; on CPU machines use data.decoder=pyav "
                              "(or decode='pyav' / 'cpu' for this loader)")


def resolve_decode(decode: str, codec: Optional[str]) -> str:
    if decode == "auto":
        if torch.cuda.is_available():
            return "nvdec"
        return "cpu" if codec in DALI_CPU_CODECS else "pyav"
    if decode not in ("nvdec", "pyav", "cpu"):
        raise ValueError(f"decode={decode!r}: choose auto, nvdec, pyav or cpu")
    if decode == "cpu" and codec is not None and codec not in DALI_CPU_CODECS:
        raise DaliUnavailable(f"DALI's CPU video decoder cannot decode {codec} (only {', '.join(DALI_CPU_CODECS)}); "
                              f"use decode='pyav', a GPU (nvdec), or shards written with world.codec=vp9")
    return decode


def _key_array(key: str) -> np.ndarray:
    b = key.encode()
    if len(b) > KEY_BYTES:
        raise ValueError(f"key {key!r} longer than {KEY_BYTES} bytes")
    out = np.zeros(KEY_BYTES, np.uint8)
    out[: len(b)] = np.frombuffer(b, np.uint8)
    return out


def _key_str(arr) -> str:
    return bytes(np.asarray(arr, np.uint8)).rstrip(b"\0").decode()


class _Prepare:
    """Per-sample python step: meta -> clip frame indices; validity checks; placeholder for unusable samples."""

    def __init__(self, loader: "DaliClipLoader"):
        self.L = loader

    def __call__(self, mp4, meta_json, masks, source_info):
        L = self.L
        source = bytes(source_info).decode(errors="replace")  # "<tar path>:<offset>:<member name>"
        shard = source.split(":")[0]
        key = source.rsplit(":", 1)[-1].partition(".")[0] or "?"
        if L._replay > 0:  # fast-forward after a resume: the reader advances, nothing is decoded
            L._replay -= 1
            return L._placeholder, np.zeros(L.clip.frames, np.int32), _key_array("__replay__"), np.full(1, 2, np.uint8)
        try:
            try:
                meta = check_meta(json.loads(bytes(meta_json))) if meta_json.size else None
            except (ValueError, UnicodeDecodeError) as err:
                raise BadSample("bad_meta", str(err)) from err
            if meta is None:
                raise BadSample("missing_component", f"no {key}.json")
            if not mp4.size:  # DALI hands a missing component over as empty: both are an unusable video
                raise BadSample("bad_video", f"empty or missing {key}.mp4")
            try:
                info = probe_video(bytes(mp4))
            except VideoDecodeError as err:
                raise BadSample("bad_video", str(err)) from err
            if info.num_frames < meta["num_frames"] or (info.height, info.width) != (meta["height"], meta["width"]):
                raise BadSample("bad_video", f"video has {info.num_frames} frames of {info.height}x{info.width}, meta says "
                                             f"{meta['num_frames']} of {meta['height']}x{meta['width']}")
            if L.decode == "cpu" and info.codec not in DALI_CPU_CODECS:
                raise BadSample("bad_video", f"codec {info.codec} is not decodable by DALI's CPU decoder")
            starts = L.clip.starts(meta["num_frames"], key, L.seed, L.pass_)
            if not starts:
                raise BadSample("too_short", f"video has {meta['num_frames']} frames, a clip spans {L.clip.span}")
            if L.with_masks and not masks.size:
                raise BadSample("missing_component", f"no {key}.masks.npz")
            idx = np.arange(starts[0], starts[0] + L.clip.span, L.clip.stride, dtype=np.int32)
            L._shard_of[key] = shard
            return mp4, idx, _key_array(key), np.ones(1, np.uint8)
        except BadSample as err:
            L._record_bad(shard, key, err.reason, err.detail)
            idx = np.zeros(L.clip.frames, np.int32)
            return L._placeholder, idx, _key_array(key), np.zeros(1, np.uint8)


class _PyavDecode:
    """DECODE step of the CPU pipeline: PyAV -> ((T, H, W, 3) uint8 FHWC, ok flag)."""

    def __init__(self, loader: "DaliClipLoader"):
        self.L = loader

    def __call__(self, mp4, idx, key):
        try:
            return decode_frames(bytes(mp4), idx), np.ones(1, np.uint8)
        except VideoDecodeError as err:  # the container was valid in prepare but the stream breaks mid-way: flag the row
            k = _key_str(key)
            self.L._record_bad(self.L._shard_of.get(k, "?"), k, "bad_video", str(err))
            return np.zeros((len(idx), 16, 16, 3), np.uint8), np.zeros(1, np.uint8)


class _Masks:
    def __init__(self, loader: "DaliClipLoader"):
        self.L = loader

    def __call__(self, masks, idx, valid):
        h, w = self.L.image_size
        if not valid[0] or not masks.size:
            return np.zeros((len(idx), h, w), np.int16)
        try:
            m = decode_masks(bytes(masks), idx)
        except ValueError:
            return np.full((len(idx), h, w), -1, np.int16)  # flagged as invalid by the iterator
        return resize_masks(m, (h, w)).astype(np.int16)


class DaliClipLoader:
    """Clip batches through DALI. Same contract as :class:`cjepa.data.loader.VideoClipLoader`.

    ``decode``: auto (NVDEC with a GPU, else PyAV, or DALI's CPU decoder for VP9 shards), nvdec, pyav or cpu.
    One clip per video and pass (``clip.clips_per_video`` > 1 and chunked evaluation are CPU-path features: a
    DALI reader emits one sample per video; in evaluation mode the clip is the video's first chunk).
    Each rank reads its ``1/world_size`` of the samples (``fn.readers.webdataset`` shard_id / num_shards).
    Position: (pass, batches read in the pass); a resumed run continues the same stream.
    """

    def __init__(self, split: SplitInfo | str, *, batch_size: int = 32, clip: ClipSpec = ClipSpec(), image_size=(196, 196),
                 with_masks: Optional[bool] = None, train: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 decode: str = "auto", num_threads: int = 2, device_id: Optional[int] = None, shuffle_buffer: int = 64,
                 batches_per_epoch: Optional[int] = None):
        self.split = split if isinstance(split, SplitInfo) else open_split(split)
        codec = (self.split.manifest or {}).get("codec")
        self.decode = resolve_decode(decode, codec)
        require_dali(self.decode)
        log.info("video clips: DALI pipeline, decode step %s%s, split %s, rank %d of %d", self.decode,
                 " (auto: no CUDA device)" if decode == "auto" and self.decode != "nvdec" else "", self.split.name, rank, world_size)
        self.batch_size, self.clip, self.image_size = batch_size, clip, tuple(int(s) for s in image_size)
        self.with_masks = self.split.has_masks if with_masks is None else with_masks
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.num_threads, self.shuffle_buffer = num_threads, shuffle_buffer
        self.device_id = (torch.cuda.current_device() if device_id is None else device_id) if self.decode == "nvdec" else None
        self.pass_ = 0
        self.skipped: Counter = Counter()
        self.bad_samples: list[tuple] = []
        self._bad_pending: dict[str, tuple] = {}
        self._shard_of: dict[str, str] = {}
        self._logged: set = set()
        self._tmp = Path(tempfile.mkdtemp(prefix="cjepa-dali-idx-"))
        self.paths, self.index_paths, self.num_samples = self._indexes()
        if self.num_samples < world_size * batch_size and train:
            raise ShardError(f"split {self.split.name!r}: {self.num_samples} readable samples, fewer than one batch per rank "
                             f"({world_size} x {batch_size})")
        per_rank = self.num_samples // world_size
        self.batches_per_epoch = batches_per_epoch or max(1, per_rank // batch_size)
        self._placeholder = np.frombuffer(encode_video(np.zeros((1, 64, 64, 3), np.uint8), fps=25,
                                                       codec="vp9" if self.decode == "cpu" else "h264"), np.uint8)
        self._dali_batches = 0  # DALI batches pulled in the current pass (the position)
        self._replay = 0
        self._pipe = None
        self._iter = None

    # -- setup
    def _indexes(self) -> tuple[list[str], list[str], int]:
        """Shard paths and wds2idx indexes; truncated shards get a trimmed index, lost samples are counted."""
        paths, idxs, total = [], [], 0
        for shard in self.split.shards:
            size = shard.path.stat().st_size
            if shard.index_path is not None:
                samples = read_index(shard.index_path)
            else:  # a bare tar: scan it (stops cleanly at damage; the missing tail is counted below or at read time)
                samples = [{"key": k, "components": c} for k, c in _scan_offsets(shard, lambda *a: self._record_bad(*map(str, a[:2]), *a[2:], now=True))]
            ok = [s for s in samples if all(off + n <= size for off, n in s["components"].values())]
            if len(ok) < len(samples) or shard.index_path is None:
                lost = len(samples) - len(ok)
                if lost:
                    self._record_bad(str(shard.path), samples[len(ok)]["key"], "truncated_shard",
                                     f"shard ends at byte {size}; {lost} sample(s) past it", count=lost, now=True)
                idx = self._tmp / (shard.path.stem + ".idx")
                _write_index_entries(idx, ok)
            else:
                idx = shard.index_path
            if ok:
                paths.append(str(shard.path))
                idxs.append(str(idx))
                total += len(ok)
        if not paths:
            raise ShardError(f"split {self.split.name!r}: no readable samples in {len(self.split.shards)} shard(s)")
        return paths, idxs, total

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types

        exts = ["mp4", "json", "masks.npz"]
        mean = [255.0 * m for m in IMAGENET_MEAN]
        std = [255.0 * s for s in IMAGENET_STD]
        h, w = self.image_size

        # The pipeline is rebuilt for every pass with a seed and shard rotation drawn from (seed, pass): each pass is an
        # exact epoch over this rank's samples, the stream depends on (seed, pass, rank) only, and resuming replays at
        # most the current pass's reader (without decoding).
        p = self.pass_

        @pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads, device_id=self.device_id,
                      seed=(self.seed * 1_000_003 + p) % (2**31) + 7919 * self.rank, exec_async=False, exec_pipelined=False)
        def graph():
            mp4, meta, masks = fn.readers.webdataset(
                paths=self.paths, index_paths=self.index_paths, ext=exts, missing_component_behavior="empty", name="reader",
                shard_id=(self.rank + p) % self.world_size if self.train else self.rank, num_shards=self.world_size, stick_to_shard=True,
                random_shuffle=self.train, initial_fill=max(2, self.shuffle_buffer), seed=(self.seed * 7_777_777 + p) % (2**31),
                pad_last_batch=False)
            source = fn.get_property(mp4, key="source_info")
            enc, idx, key, valid = fn.python_function(mp4, meta, masks, source, function=_Prepare(self), num_outputs=4)
            if self.decode == "pyav":
                frames, ok = fn.python_function(enc, idx, key, function=_PyavDecode(self), num_outputs=2, output_layouts=["FHWC", ""])
                valid = valid * ok
            else:
                frames = fn.decoders.video(enc, device="mixed" if self.decode == "nvdec" else "cpu", frames=idx, pad_mode="edge")
            # uint8 in, uint8 out (rounded), as preprocess_frames resizes; then normalise to float
            frames = fn.resize(frames, size=[h, w], interp_type=types.INTERP_LINEAR, antialias=True)
            frames = fn.crop_mirror_normalize(frames, dtype=types.FLOAT, output_layout="FCHW", mean=mean, std=std)
            outs = [frames, idx, key, valid]
            if self.with_masks:
                outs.append(fn.python_function(masks, idx, valid, function=_Masks(self), output_layouts="FHW"))
            return tuple(outs)

        pipe = graph()
        pipe.build()
        return pipe

    def _iterator(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        names = ["frames", "frame_index", "key", "valid"] + (["masks"] if self.with_masks else [])
        self._replay = self._dali_batches * self.batch_size
        self._pipe = self._build()
        policy = LastBatchPolicy.DROP if self.train else LastBatchPolicy.PARTIAL
        return DALIGenericIterator(self._pipe, names, reader_name="reader", last_batch_policy=policy, auto_reset=False)

    # -- bad samples
    def _record_bad(self, shard: str, key: str, reason: str, detail: str, count: int = 1, now: bool = False) -> None:
        entry = (shard, key, reason, detail, count)
        if now:
            self._count_bad(entry)
        else:
            self._bad_pending[key] = entry

    def _count_bad(self, entry: tuple) -> None:
        shard, key, reason, detail, count = entry
        self.skipped[reason] += count
        if len(self.bad_samples) < 1000:
            self.bad_samples.append((shard, key, reason, detail))
        if (shard, key, reason) not in self._logged:
            self._logged.add((shard, key, reason))
            log.warning("skipped sample: shard %s key %s: %s", shard, key, detail)

    # -- iteration
    def _convert(self, out: dict) -> Optional[dict]:
        keys = [_key_str(k) for k in out["key"].cpu().numpy()]
        flag = out["valid"].reshape(-1).cpu().numpy()
        valid = flag == 1
        if self.with_masks:
            valid &= ~(out["masks"].reshape(len(keys), -1) < 0).any(1).cpu().numpy()
        for k, v, f in zip(keys, valid, flag):
            if not v and f != 2:  # 2 = replayed after a resume, not a bad sample
                entry = self._bad_pending.pop(k, (self._shard_of.get(k, "?"), k, "bad_masks", "masks archive corrupt", 1))
                self._count_bad(entry)
        if not valid.any():
            return None
        sel = torch.from_numpy(np.flatnonzero(valid))
        frames = out["frames"]
        batch = {"frames": frames.index_select(0, sel.to(frames.device)), "keys": [k for k, v in zip(keys, valid) if v],
                 "frame_index": out["frame_index"].index_select(0, sel).to(torch.int64)}
        if self.with_masks:
            batch["masks"] = out["masks"].index_select(0, sel).to(frames.device, non_blocking=True)
        return batch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[dict]:
        produced = 0
        while not self.train or produced < self.batches_per_epoch:
            if self._iter is None:
                self._iter = self._iterator()
            try:
                out = next(self._iter)[0]
            except StopIteration:  # end of a pass: the next one gets its own pipeline (seed and shard rotation)
                self._iter = self._pipe = None
                self.pass_ += 1
                self._dali_batches = 0
                if not self.train:
                    return
                continue
            self._dali_batches += 1
            batch = self._convert(out)
            if batch is not None:
                produced += 1
                yield batch

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def state_dict(self) -> dict:
        return {"pass": self.pass_, "dali_batches": self._dali_batches, "layout": [self.world_size, self.batch_size], "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("layout") != [self.world_size, self.batch_size]:
            log.warning("DALI data position saved with (world_size, batch) %s, now %s: starting pass %d afresh",
                        state.get("layout"), [self.world_size, self.batch_size], int(state.get("pass", 0)) + 1)
            self.pass_, self._dali_batches = int(state.get("pass", 0)) + 1, 0
        else:
            self.pass_, self._dali_batches = int(state["pass"]), int(state["dali_batches"])
        self._iter = self._pipe = None

    def close(self) -> None:
        self._iter = self._pipe = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __del__(self):
        try:
            shutil.rmtree(self._tmp, ignore_errors=True)
        except Exception:
            pass


def _write_index_entries(path: Path, samples: list[dict]) -> None:
    lines = [f"v1.2 {len(samples)}"]
    for s in samples:
        lines.append(" ".join(f"{ext} {off} {size} {s['key']}.{ext}" for ext, (off, size) in s["components"].items()))
    path.write_text("\n".join(lines) + "\n")
