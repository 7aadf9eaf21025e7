"""Tensorboard summaries that torch's ``SummaryWriter`` cannot write on a plain install: videos and hparams runs.

Videos. ``SummaryWriter.add_video`` encodes its GIF through ``moviepy.editor``, which moviepy 2 removed; without
a moviepy 1.x it prints a line and writes nothing. :func:`add_video` writes the same record itself -- an image
summary whose encoded string is an animated GIF (what tensorboard's image dashboard plays) -- with Pillow, which
the project already needs. :func:`video_summary` builds the record, :func:`gif_bytes` the GIF.

HParams. ``SummaryWriter.add_hparams`` opens a new sub-run named by the wall clock at every call, so logging a
run's hyperparameters again (a sweep summary read twice) adds a second session. :func:`write_hparams` writes the
experiment, session-start and session-end records plus one scalar per metric into one folder whose earlier
event files it replaces (:func:`fresh_log_dir`): the HParams dashboard lists each folder once.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping, Union

import numpy as np

HParamValue = Union[bool, int, float, str]
EVENT_FILE_PREFIX = "events.out.tfevents."


def gif_bytes(video: np.ndarray, fps: float = 4.0) -> bytes:
    """uint8 (T, H, W, 3) frames -> an animated GIF (looping, ``1000 / fps`` ms a frame) as bytes."""
    from PIL import Image

    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8 or video.shape[0] == 0:
        raise ValueError(f"a video must be uint8 (T, H, W, 3) with T >= 1; got {video.dtype} {video.shape}")
    frames = [Image.fromarray(np.ascontiguousarray(f)) for f in video]
    buf = io.BytesIO()
    # disposal=1: each frame replaces the last whole. Pillow still merges identical neighbours into one frame
    # shown for their summed duration, so a still stretch plays as long but decodes to fewer frames.
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=max(1, round(1000 / fps)),
                   loop=0, disposal=1, optimize=False)
    return buf.getvalue()


def video_summary(tag: str, video: np.ndarray, fps: float = 4.0):
    """The ``Summary`` proto ``add_video`` writes: one image value whose encoded image is a GIF of the clip."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    T, H, W, C = np.asarray(video).shape
    image = Summary.Image(height=H, width=W, colorspace=C, encoded_image_string=gif_bytes(video, fps))
    return Summary(value=[Summary.Value(tag=tag, image=image)])


def add_video(writer, tag: str, video: np.ndarray, step: int, fps: float = 4.0) -> None:
    """Log a uint8 (T, H, W, 3) clip to a ``SummaryWriter`` under ``tag`` at ``step`` (tensorboard plays it)."""
    # _get_file_writer is how every SummaryWriter.add_* reaches its event file (it reopens one after close()).
    writer._get_file_writer().add_summary(video_summary(tag, video, fps), step)


def fresh_log_dir(path: Path) -> Path:
    """Create ``path`` and delete the event files directly in it: a folder whose summaries are rewritten whole
    each time (decoded clips, an hparams session) keeps one event file, not one per run of the command."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for f in path.glob(EVENT_FILE_PREFIX + "*"):
        f.unlink()
    return path


def hparam_value(text: str) -> HParamValue:
    """An override's value as the HParams dashboard should sort it: '3' -> 3, '1e-3' -> 0.001, 'true' -> True,
    anything else (lists, names) the text itself."""
    import yaml

    try:
        v = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(v, str):  # YAML 1.1 reads '1e-3' (no dot) as text
        try:
            return float(v)
        except ValueError:
            return text
    return v if isinstance(v, (bool, int, float)) else text


def write_hparams(log_dir: Path, hparams: Mapping[str, HParamValue], metrics: Mapping[str, float],
                  step: int = 0) -> Path:
    """One HParams session in ``log_dir`` (its earlier event files replaced): ``hparams`` (values bool, int, float
    or str) and ``metrics`` (name -> final value, logged as scalars at ``step``; NaN/inf are left out). Returns
    ``log_dir``."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    bad = {k: v for k, v in hparams.items() if not isinstance(v, (bool, int, float, str))}
    if bad:
        raise TypeError(f"hparam values must be bool, int, float or str; got {bad}")
    finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    log_dir = fresh_log_dir(log_dir)
    experiment, start, end = hparams_summaries(dict(hparams), finite)
    with SummaryWriter(log_dir=str(log_dir)) as w:
        for summary in (experiment, start, end):
            w._get_file_writer().add_summary(summary, step)
        for k, v in finite.items():
            w.add_scalar(k, v, step)
    return log_dir
