"""Episode videos of a planning evaluation: what the planner saw, what it aimed at, what its model predicted.

A frame is a label strip over side-by-side panels of one size: the observation, the goal, and -- where the
world model gives one -- the final frame the model predicted for the plan being executed (frame t shows the
plan whose action led to it; frame 0 the first plan). :func:`prediction_view` picks how that frame is made:

* the C-JEPA slot model on state slots has no pixel decoder, but its slots are a fixed embedding of the
  simulator state (:class:`cjepa.data.pusht.StateSlotEmbedding`), and the agent slot is a function of the
  agent position alone, the block slot of the block pose alone. So the predicted slots of the plan's last
  frame are decoded to the state whose embedding is nearest (:func:`decode_state_slots`: grid search, then
  Nelder-Mead, per object) and that state is drawn by the env renderer. This is the model's prediction,
  seen through the inverse of the embedding: on an exact embedding the decode recovers the state to well
  under a pixel (tests/plan/test_video.py), and a predicted slot off the embedding's manifold shows as the
  nearest pose the embedding can express. Velocities are not in the slots; the agent is drawn at rest.
* the simulator oracle's "prediction" is the simulated end state of the plan.
* a pixel world model whose encoder decodes slots to RGB (SAVi, :mod:`cjepa.plan.pixel_encoder`) shows the
  predicted final slots through that decoder (:class:`DecodedView`);
* other world models (VideoSAUR decodes to DINOv2 features, not pixels) get no third panel.

Clips go to disk as H.264 mp4 through PyAV where an encoder exists, else as an animated GIF;
:func:`log_episode_videos` reads them back into tensorboard as videos.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from cjepa.data.video import nearest_indices, rgb_converter
from cjepa.envs.pusht import PushTEnv
from cjepa.plan.pixel_encoder import PixelSlotEncoder
from cjepa.plan.world_model import (
    EnsembleWorldModel,
    Observation,
    SimulatorWorldModel,
    SlotWorldModel,
    StateSlotEncoder,
)
from cjepa.utils.tensorboard import add_video


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


def load_video(path: str | Path) -> np.ndarray:
    """A clip written by :func:`save_video` (mp4 or GIF) -> uint8 (T, H, W, 3)."""
    path = Path(path)
    if path.suffix == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as gif:
            return np.stack([np.array(f.convert("RGB")) for f in ImageSequence.Iterator(gif)])
    import av

    with av.open(str(path)) as container:
        to_rgb = rgb_converter()
        return np.stack([to_rgb(f) for f in container.decode(video=0)])


def log_episode_videos(writer, model: str, paths: Sequence[str | Path], fps: int = 10) -> list[str]:
    """Episode clips of one model (as written by the evaluation) as tensorboard videos, tagged
    ``<model>/episode/<file name>``; step 0, as an evaluation of fixed checkpoints has no training step.
    Returns the tags."""
    tags = []
    for p in paths:
        tags.append(f"{model}/episode/{Path(p).stem}")
        add_video(writer, tags[-1], load_video(p), 0, fps=fps)
    return tags


# ----------------------------------------------------------------------------------------------- frames


def label_height(size: int) -> int:
    """Height of the label strip over panels of ``size`` px."""
    return max(8, size // 10)


def label_strip(labels: Sequence[str], size: int) -> np.ndarray:
    """(label_height, len(labels) * size, 3) uint8: each label written over its panel, white on black."""
    import cv2

    h = label_height(size)
    strip = np.zeros((h, size * len(labels), 3), np.uint8)
    scale = h / 30.0  # cv2's simplex font is ~22 px tall at scale 1
    for i, text in enumerate(labels):
        cv2.putText(strip, text, (i * size + 2, h - max(1, h // 5)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    1, cv2.LINE_AA)
    return strip


def episode_frame(panels: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """Square (size, size, 3) panels side by side under a label strip -> (label_height + size, n * size, 3)."""
    size = panels[0].shape[0]
    if any(p.shape != (size, size, 3) for p in panels) or len(labels) != len(panels):
        raise ValueError(f"panels must be {len(labels)} square RGB frames of one size; got {[p.shape for p in panels]}")
    return np.concatenate([label_strip(labels, size), np.concatenate(panels, 1)], 0)


# ----------------------------------------------------------------------------------------------- predictions


def decode_state_slots(embedding, slots: np.ndarray) -> tuple[np.ndarray, float]:
    """(S, D) slots in the embedding's order [agent, block, background...] -> ((7,) state, rms slot residual).

    The state (velocities 0) whose agent and block slots are nearest to the given ones. Positions come from
    sin/cos features with one cycle per arena, so they are unique within the arena (an agent outside it wraps).
    """
    from scipy.optimize import minimize

    target = np.asarray(slots, np.float64)
    centre = np.array([256.0, 256.0, 256.0, 256.0, 0.0, 0.0, 0.0])  # fields not being fitted stay at the arena centre

    def slot_error(states: np.ndarray, k: int) -> np.ndarray:  # (N, 7) -> (N,) squared error of slot k
        return ((embedding(states)[:, k] - target[k]) ** 2).sum(-1)

    def fit(k: int, grid: np.ndarray, fields: list[int]) -> tuple[np.ndarray, float]:
        base = np.tile(centre, (len(grid), 1))
        base[:, fields] = grid
        x0 = grid[int(np.argmin(slot_error(base, k)))]

        def f(x):
            s = centre[None].copy()
            s[0, fields] = x
            return float(slot_error(s, k)[0])

        res = minimize(f, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-10, "maxiter": 800})
        return res.x, float(res.fun)

    xy = (np.arange(32) + 0.5) * 16.0  # 16-px grid over the arena
    agent, e_agent = fit(0, np.stack(np.meshgrid(xy, xy, indexing="ij"), -1).reshape(-1, 2), [0, 1])
    bxy, ang = (np.arange(16) + 0.5) * 32.0, np.arange(24) * (2 * np.pi / 24)
    block, e_block = fit(1, np.stack(np.meshgrid(bxy, bxy, ang, indexing="ij"), -1).reshape(-1, 3), [2, 3, 4])
    state = np.array([agent[0], agent[1], block[0], block[1], block[2] % (2 * np.pi), 0.0, 0.0])
    return state, float(np.sqrt((e_agent + e_block) / (2 * target.shape[-1])))


class PredictionView:
    """The final state a world model predicts for a plan, drawn as a frame (see the module docstring)."""

    def __init__(self, world_model, label: str, render_size: int):
        self.wm, self.label = world_model, label
        self._env = PushTEnv(render_size)

    @torch.no_grad()
    def final_state(self, obs: Observation, plan: torch.Tensor) -> np.ndarray:
        """obs as planned from, plan (H, A) in model space -> (7,) predicted state after the last block."""
        if isinstance(self.wm, SimulatorWorldModel):  # adds to its env_steps count; only recorded episodes do this
            self.wm.encode(obs)
            return self.wm.simulate(plan[None])[0, -1]
        # Observed slots come in the embedding's order [agent, block, background...]; the predictor keeps token
        # positions and re-matching aligns each predicted frame to the previous one, so the order holds.
        last = predicted_final_slots(self.wm, obs, plan)  # (S, D)
        return decode_state_slots(self.wm.encoder.embedding, last.float().cpu().numpy())[0]

    def frame(self, obs: Observation, plan: torch.Tensor) -> np.ndarray:
        self._env.reset(self.final_state(obs, plan))
        return self._env.render()


class DecodedView:
    """The final slots a pixel world model predicts for a plan, drawn by its encoder's own decoder (SAVi)."""

    def __init__(self, world_model: SlotWorldModel, label: str, render_size: int):
        self.wm, self.label, self.render_size = world_model, label, render_size

    def frame(self, obs: Observation, plan: torch.Tensor) -> np.ndarray:
        img = self.wm.encoder.decode_frame(predicted_final_slots(self.wm, obs, plan))  # (R, R, 3) uint8
        return resize_square(img, self.render_size)


@torch.no_grad()
def predicted_final_slots(wm: SlotWorldModel, obs: Observation, plan: torch.Tensor) -> torch.Tensor:
    """obs as planned from, plan (H, A) in model space -> (S, D) object slots the model predicts after the last
    block."""
    return wm.rollout(wm.encode(obs), plan[None])[0, -1, : wm.num_slots]


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (size, size, 3) by nearest sampling at pixel centres (the instance masks' resize,
    :func:`cjepa.data.video.nearest_indices`): a decoded 64-px frame stays sharp beside 224-px ones."""
    rows, cols = nearest_indices(img.shape[0], size), nearest_indices(img.shape[1], size)
    return np.ascontiguousarray(img[rows][:, cols])


def prediction_view(world_model, render_size: int) -> Optional[PredictionView | DecodedView]:
    """The view for ``world_model``, or None where it has no way to show a predicted frame."""
    if isinstance(world_model, SimulatorWorldModel):
        return PredictionView(world_model, "simulated plan end", render_size)
    if isinstance(world_model, SlotWorldModel) and isinstance(world_model.encoder, StateSlotEncoder):
        return PredictionView(world_model, "predicted plan end", render_size)
    if isinstance(world_model, EnsembleWorldModel):  # its rollout's first nodes are its first member's
        return PredictionView(world_model, "predicted plan end (first member)", render_size)
    if (isinstance(world_model, SlotWorldModel) and isinstance(world_model.encoder, PixelSlotEncoder)
            and world_model.encoder.has_pixel_decoder):
        return DecodedView(world_model, "decoded plan end", render_size)
    return None
