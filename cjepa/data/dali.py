"""DALI video pipeline: the same shards and batch contract as the CPU path, with decoding on the GPU (NVDEC).

One pipeline, whatever the machine::

    fn.readers.webdataset (wds2idx indexes, shard_id = rank; mp4 + KEY.video.i32 as an INT32 tensor)  ->  prepare
    (native DALI ops: check the mp4 against its video info, draw the clip's frames)  ->  DECODE  ->  fn.resize
    (linear, antialiased)  ->  fn.crop_mirror_normalize (ImageNet, FCHW)  ->  DALIGenericIterator

Only DECODE changes:

* ``nvdec``: ``fn.decoders.video(device="mixed")``, H.264 on the GPU's video engines; frames stay on the GPU
  and reach the consumer without a host copy. The default where CUDA is available.
* ``pyav``: a ``fn.python_function`` decoding with PyAV on the CPU (DALI's CPU decoder has no H.264). This is
  how machines without a GPU run, and test, the reader, sharding and iterator of this pipeline.
* ``cpu``: DALI's own ``fn.decoders.video(device="cpu")``, for VP8/VP9/MJPEG shards (``world.codec=vp9``).

Prepare needs a video's frame count, size, codec and byte length. The shard writer probes each video once and
stores these as ``KEY.video.i32`` (:func:`cjepa.data.shards.encode_video_info`), which the webdataset reader
hands over as an INT32 tensor (its ``dtypes`` argument): no JSON parsing and no Python in the pipeline, so
``nvdec`` and ``cpu`` run with DALI's asynchronous, pipelined executor and a prefetch queue
(:data:`PREFETCH_QUEUE_DEPTH` batches). (A parallel ``fn.external_source`` could also feed this, but it would
have to replace the reader to know which sample comes next: sharding, shuffling and epochs in Python again.)
Shards written before the video info existed still load: a one-line warning names the first such shard, and the
pipeline falls back to the old prepare step, a ``fn.python_function`` that parses the meta json and probes every
video with PyAV. Python operators are legal in asynchronous pipelines since DALI 1.29 (the executor releases the
GIL while the caller waits for outputs), so the ``pyav`` decode step, the fallback prepare step and the masks
step (npz/zlib, which no DALI operator decodes; only when masks are asked for) run under the same executor
settings; they hold the GIL while they run, which is why the shards carry the video info.

Resize and normalisation follow :func:`cjepa.data.video.preprocess_frames` (bilinear resize with
antialiasing of the uint8 frames, then mean/std); DALI's resampling kernel is its own, so the two paths agree to a small
tolerance (tested), not bit for bit. Masks go through the shared :func:`cjepa.data.video.resize_masks` and
agree exactly.

Bad data: a sample whose mp4 is missing or differs from its video info (byte length), whose video is shorter
than a clip, or whose masks are missing is replaced inside the pipeline by a tiny placeholder video
(DALI conditionals) and flagged; the iterator drops flagged rows, counts them and logs shard and key. The
fallback prepare step additionally checks meta json and container. Truncated shards are found before the
pipeline starts (index entries past the end of the file) and read only up to the damage. A video that is
corrupt inside an intact, correctly sized mp4 reaches the decoder (``pyav`` flags it; DALI's decoders raise).
Each pass over a rank's samples is its own pipeline build (seed and shard rotation from (seed, pass)), so
passes are exact epochs. Resuming replays the current pass up to the saved position: without decoding in the
fallback prepare step, by running (and discarding) the batches otherwise, since the clip starts come from the
pipeline's random generator. (DALI's video decoder cannot be checkpointed, so DALI's own pipeline checkpoints
are not an option.)

The loader owns a pipeline, NVDEC decoder state and buffers until :meth:`DaliClipLoader.close` (or the end of
a ``with`` block); a consumer that stops early or fails must close it, the pipeline is not left to the
garbage collector.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from cjepa.data.samples import BadSample, ClipLoaderBase, ClipSpec, sample_frames, sample_masks, sample_meta
from cjepa.data.shard_reader import scan_offsets
from cjepa.data.shards import (
    CODEC_IDS,
    VIDEO_INFO_EXT,
    VIDEO_INFO_VERSION,
    ShardError,
    SplitInfo,
    open_split,
    read_index,
)
from cjepa.data.video import VideoDecodeError, encode_video, probe_video, resize_masks
from cjepa.utils.image import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("cjepa.data")

KEY_BYTES = 128
DALI_CPU_CODECS = ("vp8", "vp9", "mjpeg")
# Batches DALI prepares ahead of the consumer (executor queue); 1 would leave the decoder idle while a step runs
PREFETCH_QUEUE_DEPTH = 2
# Bits of the native prepare step's per-sample check (0 = usable), with the reason each is counted under
CHECKS = ((1, "bad_video", "mp4 missing, empty or not the size its video info records"),
          (2, "too_short", "video is shorter than a clip"),
          (4, "bad_video", "codec is not decodable by DALI's CPU decoder"),
          (8, "missing_component", "no masks.npz"),
          (16, "bad_meta", f"video info is not version {VIDEO_INFO_VERSION}"))


class DaliUnavailable(RuntimeError):
    """DALI (or the GPU a decode mode needs) is missing; the message says what to install or which decoder to pick."""


def require_dali(decode: str):
    try:
        import nvidia.dali  # noqa: F401
    except ImportError as err:
        raise DaliUnavailable("data.decoder=dali needs NVIDIA DALI: pip install nvidia-dali-cuda120 (CUDA 12) or "
                              "nvidia-dali-cuda130; "
                              "or use data.decoder=pyav") from err
    if decode == "nvdec" and not torch.cuda.is_available():
        raise DaliUnavailable("DALI's NVDEC video decoder needs a CUDA GPU and none is visible; on CPU machines use "
                              "data.decoder=pyav "
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


def _source(arr) -> tuple[str, str]:
    """(shard, key) of a key row; source_info reads "<tar path>:<offset>:<member name>", keys never hold ':'."""
    text = bytes(np.asarray(arr, np.uint8)).rstrip(b"\0").decode(errors="replace")
    if ":" not in text:
        return "?", text
    return text.rsplit(":", 2)[0], text.rsplit(":", 1)[-1].partition(".")[0] or "?"


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
        try:  # the clip core's meta check: a missing json and a bad one are told apart as on the PyAV path
            meta = sample_meta({"__key__": key, **({"json": bytes(meta_json)} if meta_json.size else {})})
            if not mp4.size:  # DALI hands a missing component over as empty: both are an unusable video
                raise BadSample("bad_video", f"empty or missing {key}.mp4")
            try:
                info = probe_video(bytes(mp4))
            except VideoDecodeError as err:
                raise BadSample("bad_video", str(err)) from err
            if info.num_frames < meta["num_frames"] or (info.height, info.width) != (meta["height"], meta["width"]):
                raise BadSample("bad_video",
                                f"video has {info.num_frames} frames of {info.height}x{info.width}, meta says "
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
        shard, k = _source(key)
        try:  # the clip core's decode (frame size was checked by the prepare step)
            return sample_frames({"__key__": k, "mp4": bytes(mp4)}, idx, None), np.ones(1, np.uint8)
        except BadSample as err:  # the container passed prepare but the stream breaks mid-way: flag the row
            self.L._record_bad(self.L._shard_of.get(k, shard), k, err.reason, err.detail)
            return np.zeros((len(idx), 16, 16, 3), np.uint8), np.zeros(1, np.uint8)


class _Masks:
    def __init__(self, loader: "DaliClipLoader"):
        self.L = loader

    def __call__(self, masks, idx, valid):
        h, w = self.L.image_size
        if not valid[0] or not masks.size:
            return np.zeros((len(idx), h, w), np.int16)
        try:
            m = sample_masks({"__key__": "?", "masks.npz": bytes(masks)}, idx, None)
        except BadSample:
            return np.full((len(idx), h, w), -1, np.int16)  # flagged as invalid by the iterator
        return resize_masks(m, (h, w)).astype(np.int16)


class DaliClipLoader(ClipLoaderBase):
    """Clip batches through DALI. Same contract as :class:`cjepa.data.loader.VideoClipLoader`.

    ``decode``: auto (NVDEC with a GPU, else PyAV, or DALI's CPU decoder for VP9 shards), nvdec, pyav or cpu.
    One clip per video and pass (``clip.clips_per_video`` > 1 and chunked evaluation are CPU-path features: a
    DALI reader emits one sample per video; in evaluation mode the clip is the video's first chunk).
    Each rank reads its ``1/world_size`` of the samples (``fn.readers.webdataset`` shard_id / num_shards).
    Position: (pass, batches read in the pass); a resumed run continues the same stream.
    """

    def __init__(self, split: SplitInfo | str, *, batch_size: int = 32, clip: ClipSpec = ClipSpec(),
                 image_size=(196, 196),
                 with_masks: Optional[bool] = None, train: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1,
                 decode: str = "auto", num_threads: int = 2, device_id: Optional[int] = None, shuffle_buffer: int = 64,
                 batches_per_epoch: Optional[int] = None):
        super().__init__()
        self.split = split if isinstance(split, SplitInfo) else open_split(split)
        self.split.require_local("the DALI reader (it opens shards by their indexes)")
        codec = (self.split.manifest or {}).get("codec")
        self.decode = resolve_decode(decode, codec)
        require_dali(self.decode)
        log.info("video clips: DALI pipeline, decode step %s%s, split %s, rank %d of %d", self.decode,
                 " (auto: no CUDA device)" if decode == "auto" and self.decode != "nvdec" else "", self.split.name,
                 rank, world_size)
        self.batch_size, self.clip, self.image_size = batch_size, clip, tuple(int(s) for s in image_size)
        self.with_masks = self.split.has_masks if with_masks is None else with_masks
        self.train, self.seed, self.rank, self.world_size = train, seed, rank, world_size
        self.num_threads, self.shuffle_buffer = num_threads, shuffle_buffer
        self.device_id = (
            (torch.cuda.current_device() if device_id is None else device_id) if self.decode == "nvdec" else None
        )
        self.layout = [world_size, batch_size]
        self.pass_ = 0
        self._bad_pending: dict[str, tuple] = {}
        self._shard_of: dict[str, str] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="cjepa-dali-idx-"))
        self.paths, self.index_paths, self.num_samples = self._indexes()
        # native prepare (no Python operator) where every sample carries its video info; else the probing fallback
        self.native = not self.without_info
        if not self.native:
            log.warning("DALI: %d shard(s) of split %s have no KEY.%s video info (written by an older cjepa), e.g. %s: "
                        "every video "
                        "is probed in Python, which holds the GIL; re-write the split (`cjepa data world|clevrer ... "
                        "--overwrite`, `cjepa pusht ... --overwrite`) "
                        "to read it natively", len(self.without_info), self.split.name, VIDEO_INFO_EXT,
                        self.without_info[0])
        if self.num_samples < world_size * batch_size and train:
            raise ShardError(f"split {self.split.name!r}: {self.num_samples} readable samples, fewer than one batch "
                             "per rank "
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
        self.without_info: list[str] = []  # shards with samples written before KEY.video.i32 existed
        for shard in self.split.shards:
            size = shard.path.stat().st_size
            if shard.index_path is not None:
                samples = read_index(shard.index_path)
            else:  # a bare tar: scan it (stops cleanly at damage; the missing tail is counted below or at read time)
                found = scan_offsets(shard, lambda *a: self._record_bad(*map(str, a[:2]), *a[2:], now=True))
                samples = [{"key": k, "components": c} for k, c in found]
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
            if any(VIDEO_INFO_EXT not in s["components"] for s in ok):
                self.without_info.append(str(shard.path))
            if ok:
                paths.append(str(shard.path))
                idxs.append(str(idx))
                total += len(ok)
        if not paths:
            raise ShardError(f"split {self.split.name!r}: no readable samples in {len(self.split.shards)} shard(s)")
        return paths, idxs, total

    def _build(self):
        from nvidia.dali import fn, pipeline_def, types

        mean = [255.0 * m for m in IMAGENET_MEAN]
        std = [255.0 * s for s in IMAGENET_STD]
        h, w = self.image_size
        native = self.native

        # The pipeline is rebuilt for every pass with a seed and shard rotation drawn from (seed, pass): each pass is an
        # exact epoch over this rank's samples, the stream depends on (seed, pass, rank) only, and resuming replays at
        # most the current pass.
        p = self.pass_

        @pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads, device_id=self.device_id,
                      seed=(self.seed * 1_000_003 + p) % (2**31) + 7919 * self.rank, exec_async=True,
                      exec_pipelined=True,
                      prefetch_queue_depth=PREFETCH_QUEUE_DEPTH, enable_conditionals=native)
        def graph():
            mp4, second, masks = fn.readers.webdataset(
                paths=self.paths, index_paths=self.index_paths,
                ext=["mp4", VIDEO_INFO_EXT if native else "json", "masks.npz"],
                dtypes=[types.UINT8, types.INT32 if native else types.UINT8, types.UINT8],
                missing_component_behavior="empty",
                name="reader", shard_id=(self.rank + p) % self.world_size if self.train else self.rank,
                num_shards=self.world_size,
                stick_to_shard=True, random_shuffle=self.train, initial_fill=max(2, self.shuffle_buffer),
                seed=(self.seed * 7_777_777 + p) % (2**31), pad_last_batch=False)
            if native:
                enc, idx, key, valid, check = self._native_prepare(fn, types, mp4, second, masks)
            else:
                source = fn.get_property(mp4, key="source_info")
                enc, idx, key, valid = fn.python_function(mp4, second, masks, source, function=_Prepare(self),
                                                          num_outputs=4)
                check = valid  # the fallback step records its reasons itself
            if self.decode == "pyav":
                frames, ok = fn.python_function(enc, idx, key, function=_PyavDecode(self), num_outputs=2,
                                                output_layouts=["FHWC", ""])
                valid = valid * ok
            else:
                frames = fn.decoders.video(enc, device="mixed" if self.decode == "nvdec" else "cpu", frames=idx,
                                           pad_mode="edge")
            # uint8 in, uint8 out (rounded), as preprocess_frames resizes; then normalise to float
            frames = fn.resize(frames, size=[h, w], interp_type=types.INTERP_LINEAR, antialias=True)
            frames = fn.crop_mirror_normalize(frames, dtype=types.FLOAT, output_layout="FCHW", mean=mean, std=std)
            outs = [frames, idx, key, valid, check]
            if self.with_masks:
                outs.append(fn.python_function(masks, idx, valid, function=_Masks(self), output_layouts="FHW"))
            return tuple(outs)

        pipe = graph()
        pipe.build()
        return pipe

    def _native_prepare(self, fn, types, mp4, info, masks):
        """Prepare with DALI operators only: check each sample against its video info, draw its clip, and swap a
        tiny placeholder in for unusable samples (the decoder must get a decodable video for every row).

        Returns (video bytes, frame indices (T,) int32, source_info row, valid (1,) uint8, check bits int32).
        """
        import nvidia.dali.math as dmath

        clip = self.clip
        nbytes = mp4.shape(dtype=types.INT32)[0]
        num_frames = info[1]
        bits = [nbytes != info[5], num_frames < clip.span]
        if self.decode == "cpu":
            bits.append((info[4] < CODEC_IDS["vp9"]) | (info[4] > CODEC_IDS["mjpeg"]))  # ids 2..4: vp9, vp8, mjpeg
        else:
            bits.append(nbytes < 0)  # always false: keeps the bit positions of CHECKS
        bits.append(masks.shape(dtype=types.INT32)[0] == 0 if self.with_masks else nbytes < 0)
        bits.append(info[0] != VIDEO_INFO_VERSION)
        check = fn.cast(bits[0], dtype=types.INT32)
        for i, b in enumerate(bits[1:], 1):
            check = check + fn.cast(b, dtype=types.INT32) * (1 << i)
        if clip.sampling == "chunks":  # evaluation: the video's first chunk, as the CPU path's first clip
            start = fn.cast(num_frames * 0, dtype=types.INT32)
        else:  # uniform over the valid starts; the pipeline seed makes it a function of (seed, pass, rank, position)
            last = num_frames - clip.span
            u = fn.random.uniform(range=[0.0, 1.0], dtype=types.FLOAT)
            start = dmath.min(fn.cast(dmath.floor(u * fn.cast(last + 1, dtype=types.FLOAT)), dtype=types.INT32), last)
        steps = types.Constant(np.arange(0, clip.span, clip.stride, dtype=np.int32))
        source = fn.pad(fn.get_property(info, key="source_info"), fill_value=0)  # equal length rows for the iterator
        if check == 0:
            enc = mp4
            idx = start + steps
        else:
            enc = types.Constant(self._placeholder)
            idx = types.Constant(np.zeros(clip.frames, np.int32))
        valid = fn.reshape(fn.cast(check == 0, dtype=types.UINT8), shape=[1])
        return enc, idx, source, valid, check

    def _iterator(self):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        names = ["frames", "frame_index", "key", "valid", "check"] + (["masks"] if self.with_masks else [])
        # the fallback prepare step skips decoding while it replays; the native pipeline replays by running below
        self._replay = 0 if self.native else self._dali_batches * self.batch_size
        self._pipe = self._build()
        policy = LastBatchPolicy.DROP if self.train else LastBatchPolicy.PARTIAL
        it = DALIGenericIterator(self._pipe, names, reader_name="reader", last_batch_policy=policy, auto_reset=False)
        if self.native:
            for _ in range(self._dali_batches):  # the same draws as before the interruption, then discarded
                next(it)
        return it

    # -- bad samples
    def _record_bad(self, shard: str, key: str, reason: str, detail: str, count: int = 1, now: bool = False) -> None:
        entry = (shard, key, reason, detail, count)
        if now:
            self.count_bad(*entry)
        else:
            self._bad_pending[key] = entry

    # -- iteration
    def _convert(self, out: dict) -> Optional[dict]:
        sources = [_source(k) for k in out["key"].cpu().numpy()]
        keys = [k for _, k in sources]
        flag = out["valid"].reshape(-1).cpu().numpy()
        checks = out["check"].reshape(-1).cpu().numpy() if self.native else np.zeros(len(keys), np.int64)
        valid = flag == 1
        if self.with_masks:
            valid &= ~(out["masks"].reshape(len(keys), -1) < 0).any(1).cpu().numpy()
        for (shard, k), v, f, c in zip(sources, valid, flag, checks):
            if not v and f != 2:  # 2 = replayed after a resume, not a bad sample
                if c:  # found by the native prepare step: the lowest bit set names the reason
                    bit, reason, detail = next(x for x in CHECKS if c & x[0])
                    entry = (shard, k, reason, detail, 1)
                else:
                    entry = self._bad_pending.pop(k,
                                                  (self._shard_of.get(k, shard), k, "bad_masks",
                                                   "masks archive corrupt", 1))
                self.count_bad(*entry)
        if not valid.any():
            return None
        sel = torch.from_numpy(np.flatnonzero(valid))
        frames = out["frames"]
        batch = {"frames": frames.index_select(0, sel.to(frames.device)), "keys": [k for k, v in zip(keys, valid) if v],
                 "frame_index": out["frame_index"].index_select(0, sel).to(torch.int64)}
        if self.with_masks:
            batch["masks"] = out["masks"].index_select(0, sel).to(frames.device, non_blocking=True)
        return batch

    def __iter__(self) -> Iterator[dict]:
        produced = 0
        try:
            while not self.train or produced < self.batches_per_epoch:
                if self._iter is None:
                    self._iter = self._iterator()
                try:
                    out = next(self._iter)[0]
                except StopIteration:  # end of a pass: the next one gets its own pipeline (seed and shard rotation)
                    self._release()
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
        except GeneratorExit:  # the consumer stopped early: an evaluation pass is over, a training pass resumes later
            if not self.train:
                self._release()
            raise
        except BaseException:  # a failed pipeline cannot go on; the next iteration rebuilds it at the saved position
            self._release()
            raise

    def state_dict(self) -> dict:
        return {"pass": self.pass_, "dali_batches": self._dali_batches, "layout": self.layout, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if self.same_layout(state, int(state.get("pass", 0)) + 1):  # layout: (world_size, batch size)
            self.pass_, self._dali_batches = int(state["pass"]), int(state["dali_batches"])
        else:
            self.pass_, self._dali_batches = int(state.get("pass", 0)) + 1, 0
        self._release()

    def _release(self) -> None:
        """Stop and drop the pipeline (its threads, decoder and buffers) now, not whenever the garbage collector
        runs."""
        pipe, self._iter, self._pipe = self._pipe, None, None
        if pipe is not None:
            pipe._shutdown()  # DALI's own teardown (what Pipeline.__del__ calls); idempotent

    def close(self) -> None:
        """Release the pipeline and the temporary indexes; the loader is done (it is not iterated again)."""
        self._release()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _write_index_entries(path: Path, samples: list[dict]) -> None:
    lines = [f"v1.2 {len(samples)}"]
    for s in samples:
        lines.append(" ".join(f"{ext} {off} {size} {s['key']}.{ext}" for ext, (off, size) in s["components"].items()))
    path.write_text("\n".join(lines) + "\n")
