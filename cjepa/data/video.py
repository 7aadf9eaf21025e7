"""Video bytes <-> frames, and the ONE frame preprocessing used by every stage.

Encoder training, slot extraction and planning all turn uint8 frames into model input through
:func:`preprocess_frames`: bilinear antialiased resize of [0, 1] floats, then ImageNet mean/std. The original
used bicubic+clamp for encoder training, torchvision bilinear-antialias for extraction and normalise-then-resize
for planning (Q15), so the three stages saw slightly different pixels; here there is one function. Frames are
resized to a fixed (h, w) ignoring aspect ratio, as the original does for CLEVRER 480x320 -> 196x196 (Q16): kept
on purpose so released encoders see what they were trained on, and configurable (``data.image_size``).

Instance masks are resized with nearest-neighbour sampling at pixel centres (:func:`resize_masks`); the DALI
path calls the same function, so masks agree bit for bit between decoders.

Decoding is PyAV (FFmpeg bundled in the wheel; no apt step). torchcodec is faster but its CPU wheels stop at a
version that needs a system FFmpeg, and its frames are bit-identical to PyAV's, so PyAV is the CPU decoder.
Frame ``i`` is the i-th frame in presentation order, the same numbering DALI's video decoder uses.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from cjepa.utils.image import IMAGENET_MEAN, IMAGENET_STD, imagenet_to_unit, resize_frames

# codec name in our configs and manifests -> FFmpeg encoder
ENCODERS = {"h264": "libx264", "vp9": "libvpx-vp9"}

# x264 settings of every H.264 video written here (with crf and the GOP). No B-frames: decode order is
# presentation order. No macroblock-tree rate control: on our small frames its decisions took in the contents
# of freed heap memory, so the same frames could encode to different bytes (see encode_video).
X264_OPTIONS = {"preset": "veryfast", "bf": "0", "mbtree": "0"}


class VideoDecodeError(ValueError):
    """The bytes are not a decodable video (empty, corrupt, truncated, or fewer frames than asked for)."""


# --------------------------------------------------------------------------------------------- preprocessing


def preprocess_frames(frames: np.ndarray | torch.Tensor, size: Optional[Sequence[int]] = None) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float32 (T, 3, h, w): resize (bilinear, antialiased) the uint8 frames, then
    ImageNet-normalise.

    ``size`` is (h, w); None keeps the input size (no resampling at all). Resize comes before normalisation
    (fixes the planning path's order, Q15). The resize is the project's one frame resize,
    :func:`cjepa.utils.image.resize_frames`, on the uint8 frames: on CPU torch's vectorised uint8 kernel, ~9x faster
    than resampling floats for 480x320 -> 196x196, within a grey level of it (far below the codec's error).
    """
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"preprocess_frames expects uint8 (T, H, W, 3), got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2)  # (T, 3, H, W), channels-last in memory: what the uint8 kernel wants
    if size is not None:
        x = resize_frames(x, size)  # uint8 (T, 3, h, w)
    x = x.contiguous().float()  # (T, 3, h, w); the layout copy is made on the 1-byte values
    # (x / 255 - mean) / std as two in-place passes: x - 255 mean, times 1 / (255 std)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) * 255.0
    inv_std = 1.0 / (torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) * 255.0)
    return x.sub_(mean).mul_(inv_std)


# Inverse of the normalisation in preprocess_frames: (..., 3, h, w) -> [0, 1] floats (for viewing).
denormalise = imagenet_to_unit


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each destination pixel when resizing src -> dst by nearest sampling at pixel centres."""
    return np.minimum(((np.arange(dst) + 0.5) * (src / dst)).astype(np.int64), src - 1)


def resize_masks(masks: np.ndarray, size: Optional[Sequence[int]] = None) -> np.ndarray:
    """Instance-id maps (T, H, W) -> (T, h, w) by nearest sampling at pixel centres; ids are never blended."""
    if masks.ndim != 3:
        raise ValueError(f"resize_masks expects (T, H, W), got {masks.shape}")
    if size is None or tuple(size) == masks.shape[1:]:
        return masks
    rows = nearest_indices(masks.shape[1], int(size[0]))
    cols = nearest_indices(masks.shape[2], int(size[1]))
    return masks[:, rows][:, :, cols]


# --------------------------------------------------------------------------------------------- encode


def encode_video(frames: np.ndarray, *, fps: float, codec: str = "h264", crf: int = 18, gop: int = 16,
                 threads: int = 1) -> bytes:
    """uint8 (T, H, W, 3) -> mp4 bytes (H.264 or VP9, yuv420p, no B-frames).

    A short GOP keeps clip decoding cheap (a decoder starts from the key frame before a clip); no B-frames
    keeps decode order equal to presentation order. The bytes are a function of the frames alone, so shards
    written from a seed are reproducible: one encoder thread, and for H.264 no macroblock-tree rate control.
    x264's mbtree pass lets the contents of freed heap memory into its decisions on these small frames, so the
    same frames encoded twice could differ (rarely in a fresh process, often once the heap has been used);
    turning it off leaves size and quality about the same.
    """
    import av

    if codec not in ENCODERS:
        raise ValueError(f"unknown codec {codec!r}; choose one of {sorted(ENCODERS)}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"encode_video expects uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    T, H, W, _ = frames.shape
    if T == 0:
        raise ValueError("encode_video: no frames")
    if H % 2 or W % 2:
        raise ValueError(f"encode_video: yuv420p needs even height and width, got {H}x{W}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(ENCODERS[codec], rate=_fps_fraction(fps))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.thread_count = threads
        if codec == "h264":
            stream.options = {"crf": str(crf), "g": str(gop), **X264_OPTIONS}
        else:  # VP9, constant quality; "realtime" + cpu-used 8 keeps encoding about as fast as x264 veryfast
            stream.options = {"crf": str(crf), "b": "0", "g": str(gop), "deadline": "realtime", "cpu-used": "8"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _fps_fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


# --------------------------------------------------------------------------------------------- decode


@dataclass
class VideoInfo:
    num_frames: int
    height: int
    width: int
    fps: float
    codec: str


def probe_video(data: bytes) -> VideoInfo:
    """Read the container and count packets (no decoding): catches empty, garbage and truncated files cheaply."""
    import av

    if not data:
        raise VideoDecodeError("empty video (0 bytes)")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            packets = sum(1 for p in container.demux(stream) if p.size > 0)
            ctx = stream.codec_context
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            info = VideoInfo(num_frames=packets, height=ctx.height, width=ctx.width, fps=fps, codec=ctx.name)
    except VideoDecodeError:
        raise
    except Exception as err:  # av.error.* and struct errors from broken headers
        raise VideoDecodeError(f"unreadable video container: {err}") from err
    if info.num_frames == 0 or info.height == 0 or info.width == 0:
        raise VideoDecodeError(f"video has no frames ({info.num_frames} packets, {info.height}x{info.width})")
    return info


SEEK_MIN_FRAME = 24  # below this, decoding from the start costs about as much as seeking


def decode_frames(data: bytes, indices: Optional[Sequence[int]] = None, *, threads: int = 1,
                  seek: bool = True) -> np.ndarray:
    """mp4 bytes -> uint8 (len(indices), H, W, 3); ``indices`` None = every frame.

    Frames are numbered in presentation order from 0. For a clip deep into a video the decoder seeks to the key
    frame before it (our shards have one every 16 frames) instead of decoding everything before the clip; the
    frame number of each decoded frame then comes from its timestamp, and whenever the timestamps do not map
    cleanly to frame numbers (variable frame rate, odd edit lists) or the seek lands past the clip, it decodes
    from the start instead. Only the requested frames are converted to RGB (the YUV->RGB conversion costs more
    than decoding at these sizes). Indices may repeat or come in any order. Raises :class:`VideoDecodeError` on
    any decoder error or when the video is shorter than the largest index.
    """
    if not data:
        raise VideoDecodeError("empty video (0 bytes)")
    wanted = None if indices is None else np.asarray(indices, dtype=np.int64)
    if wanted is not None and (wanted.size == 0 or wanted.min() < 0):
        raise ValueError(f"decode_frames: bad frame indices {indices}")
    if wanted is not None and seek and int(wanted.min()) >= SEEK_MIN_FRAME:
        got = _decode_seeking(data, wanted, threads)
        if got is not None:
            return got
    return _decode_sequential(data, wanted, threads)


def rgb_converter():
    """A decoded frame -> (H, W, 3) uint8 RGB converter, for one decode call in the process that runs it.

    ``VideoFrame.to_ndarray(format=...)`` converts through a swscale context that PyAV >= 18.1.1 keeps per thread
    for the life of the process. A DataLoader worker forked after its parent converted a frame inherits that
    context without the scaling threads it started, and hangs in its first conversion. A reformatter of our own,
    made where it is used, never crosses a fork (and the earlier releases, which made one per frame, agree
    pixel for pixel)."""
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    return lambda frame: reformatter.reformat(frame, format="rgb24").to_ndarray()


def _open_stream(container, threads: int):
    if not container.streams.video:
        raise VideoDecodeError("no video stream")
    stream = container.streams.video[0]
    stream.codec_context.thread_count = threads
    if threads > 1:
        stream.thread_type = "AUTO"
    return stream


def _decode_sequential(data: bytes, wanted: Optional[np.ndarray], threads: int) -> np.ndarray:
    import av

    last = None if wanted is None else int(wanted.max())
    needed = None if wanted is None else set(wanted.tolist())
    got: dict[int, np.ndarray] = {}
    frames: list[np.ndarray] = []
    n = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = _open_stream(container, threads)
            to_rgb = rgb_converter()
            for frame in container.decode(stream):
                if needed is None:
                    frames.append(to_rgb(frame))
                elif n in needed:
                    got[n] = to_rgb(frame)
                n += 1
                if last is not None and n > last:
                    break
    except VideoDecodeError:
        raise
    except Exception as err:
        raise VideoDecodeError(f"decoder error after {n} frames: {err}") from err
    if wanted is None:
        if not frames:
            raise VideoDecodeError("video decoded to 0 frames")
        return np.stack(frames)
    if last >= n:
        raise VideoDecodeError(f"video has {n} frames, frame {last} was asked for")
    return np.stack([got[int(i)] for i in wanted])


def _decode_seeking(data: bytes, wanted: np.ndarray, threads: int) -> Optional[np.ndarray]:
    """Seek to the key frame before the first wanted frame; None when timestamps cannot be trusted (caller falls
    back)."""
    import av

    first, last = int(wanted.min()), int(wanted.max())
    needed = set(wanted.tolist())
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = _open_stream(container, threads)
            rate, tb = stream.average_rate, stream.time_base
            if not rate or not tb:
                return None
            start = stream.start_time or 0
            container.seek(start + int(first / (rate * tb)), stream=stream, backward=True, any_frame=False)
            to_rgb = rgb_converter()
            previous = None
            for frame in container.decode(stream):
                if frame.pts is None:
                    return None
                exact = float((frame.pts - start) * tb * rate)
                n = round(exact)
                if (
                    abs(exact - n) > 0.01
                    or (previous is None and n > first)
                    or (previous is not None and n != previous + 1)
                ):
                    return None  # not a constant frame rate we can number by timestamp, or the seek overshot
                previous = n
                if n in needed:
                    got[n] = to_rgb(frame)
                if n >= last:
                    break
    except Exception as err:
        raise VideoDecodeError(f"decoder error while seeking to frame {first}: {err}") from err
    if len(got) != len(needed):
        return None  # ran out of frames: let the sequential decoder produce the precise error
    return np.stack([got[int(i)] for i in wanted])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 arrays (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
