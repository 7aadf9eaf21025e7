"""Test scaffolding: read back what was logged to tensorboard, through tensorboard's own readers.

Videos are image summaries holding an animated GIF; they are decoded frame by frame with Pillow. HParams
sessions are read from the hparams plugin's records (plugin data of the ``_hparams_/...`` tags).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def accumulator(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def event_videos(log_dir: Path, tag: str) -> list[tuple[int, np.ndarray]]:
    """Every clip logged under ``tag`` in ``log_dir``: (step, uint8 (T, H, W, 3) frames of its GIF)."""
    from PIL import Image

    out = []
    for event in accumulator(log_dir).Images(tag):
        gif = Image.open(io.BytesIO(event.encoded_image_string))
        assert gif.format == "GIF", f"{tag} at step {event.step} is a {gif.format} image, not a video"
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.array(gif.convert("RGB")))
        out.append((event.step, np.stack(frames)))
    return out


def hparams_session(log_dir: Path) -> tuple[dict, dict, list[str]]:
    """(hparams, metric name -> last logged value, metric names of the experiment record) of one session run."""
    from tensorboard.plugins.hparams import metadata

    acc = accumulator(log_dir)
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    names = [m.name.tag for m in experiment.metric_infos]
    hparams = {}
    for k, v in start.hparams.items():
        kind = v.WhichOneof("kind")
        hparams[k] = getattr(v, kind)
    values = {}
    for name in names:
        if name in acc.Tags()["scalars"]:
            values[name] = acc.Scalars(name)[-1].value
    return hparams, values, names
