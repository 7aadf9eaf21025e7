"""Write short RGB clips to disk: H.264 mp4 through PyAV where an encoder exists, else an animated GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_video(frames: np.ndarray, path: str | Path, fps: int = 10) -> Path:
    """frames (T, H, W, 3) uint8 -> ``path`` (.mp4; falls back to .gif next to it). Returns the written path."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8 (T, H, W, 3); got {frames.dtype} {frames.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _save_mp4(frames, path.with_suffix(".mp4"), fps)
    except Exception:  # no usable H.264/MPEG-4 encoder in this PyAV build: GIF needs only Pillow
        return _save_gif(frames, path.with_suffix(".gif"), fps)


def _save_mp4(frames: np.ndarray, path: Path, fps: int) -> Path:
    import av

    T, H, W, _ = frames.shape
    # yuv420p needs even sizes: pad by one row/column of edge pixels where odd.
    frames = np.pad(frames, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _save_gif(frames: np.ndarray, path: Path, fps: int) -> Path:
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    return path
