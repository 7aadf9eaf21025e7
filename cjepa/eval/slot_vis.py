"""Pictures of slot masks: frames with a coloured slot overlay, a per-slot grid for tensorboard, and a GIF.

``overlay`` colours each pixel by its argmax slot (a fixed palette, so slot k has the same colour in every
picture of a run) blended with the frame; ``slot_grid`` stacks, for a few frames, the frame, the overlay and each
slot's soft mask times the frame (one column per frame); ``slot_video`` is frame | overlay over time, which
``save_gif`` writes to a file and ``log_slot_video`` sends to tensorboard as a video.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cjepa.utils.image import imagenet_to_unit
from cjepa.utils.tensorboard import add_video

# 12 well-separated colours (tab10-like plus two), RGB in [0, 1].
PALETTE = torch.tensor(
    [
        [0.12, 0.47, 0.71],
        [1.00, 0.50, 0.05],
        [0.17, 0.63, 0.17],
        [0.84, 0.15, 0.16],
        [0.58, 0.40, 0.74],
        [0.55, 0.34, 0.29],
        [0.89, 0.47, 0.76],
        [0.50, 0.50, 0.50],
        [0.74, 0.74, 0.13],
        [0.09, 0.75, 0.81],
        [0.00, 0.00, 0.55],
        [0.60, 0.90, 0.30],
    ]
)


def frames_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised (T, 3, H, W) -> [0, 1]."""
    return imagenet_to_unit(frames.float()).clamp(0, 1)


def _upsample(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, S, h, w) soft masks -> (T, S, H, W)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.float()
    return F.interpolate(masks.float(), size=tuple(size), mode="bilinear", align_corners=False)


def palette(num_slots: int) -> torch.Tensor:
    reps = (num_slots + len(PALETTE) - 1) // len(PALETTE)
    return PALETTE.repeat(reps, 1)[:num_slots]


def overlay(frames01: torch.Tensor, masks: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """frames (T, 3, H, W) in [0, 1], soft masks (T, S, h, w) -> (T, 3, H, W) frames tinted by argmax slot."""
    m = _upsample(masks.cpu(), tuple(frames01.shape[-2:]))
    ids = m.argmax(dim=1)  # (T, H, W)
    colours = palette(m.shape[1])[ids].permute(0, 3, 1, 2)  # (T, 3, H, W)
    return (1 - alpha) * frames01.cpu() + alpha * colours


def slot_grid(frames: torch.Tensor, masks: torch.Tensor, max_frames: int = 6) -> torch.Tensor:
    """ImageNet-normalised frames (T, 3, H, W) + soft masks (T, S, h, w) -> one image (3, (S + 2) H, T' W) in [0, 1].

    Rows: the frames, the argmax overlay, then each slot's soft mask times the frame; columns: up to
    ``max_frames`` evenly spaced frames.
    """
    T = frames.shape[0]
    sel = torch.linspace(0, T - 1, min(T, max_frames)).round().long()
    f = frames_to_unit(frames[sel].cpu())
    m = _upsample(masks[sel].cpu(), tuple(f.shape[-2:]))  # (T', S, H, W)
    rows = [f, overlay(f, masks[sel])]
    for s in range(m.shape[1]):
        rows.append(f * m[:, s : s + 1] + (1 - m[:, s : s + 1]) * 0.1)
    grid = torch.stack(rows)  # (R, T', 3, H, W)
    R, Tp, C, H, W = grid.shape
    return grid.permute(2, 0, 3, 1, 4).reshape(C, R * H, Tp * W).clamp(0, 1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(..., 3, H, W) in [0, 1] -> uint8 (..., H, W, 3)."""
    x = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def slot_video(frames: torch.Tensor, masks: torch.Tensor, scale: int = 1) -> np.ndarray:
    """ImageNet-normalised frames (T, 3, H, W) + soft masks (T, S, h, w) -> uint8 (T, scale H, 2 scale W, 3):
    each frame beside itself tinted by argmax slot."""
    f = frames_to_unit(frames.detach().cpu())
    both = torch.cat([f, overlay(f, masks.detach())], dim=-1)  # (T, 3, H, 2W)
    if scale > 1:
        both = F.interpolate(both, scale_factor=scale, mode="nearest")
    return to_uint8(both)


def save_gif(path: str | os.PathLike, frames: torch.Tensor, masks: torch.Tensor, fps: float = 8.0,
             scale: int = 1) -> Path:
    """Write a GIF of :func:`slot_video` (frame | overlay over time). frames ImageNet-normalised (T, 3, H, W)."""
    from PIL import Image

    imgs = [Image.fromarray(a) for a in slot_video(frames, masks, scale)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.gif")
    imgs[0].save(tmp, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    os.replace(tmp, path)
    return path


def log_slot_video(writer, tag: str, frames: torch.Tensor, masks: torch.Tensor, step: int, fps: float = 8.0,
                   scale: int = 2) -> None:
    """One clip's slot masks over time (:func:`slot_video`) as a tensorboard video under ``tag`` at ``step``."""
    add_video(writer, tag, slot_video(frames, masks, scale), step, fps=fps)


def log_slot_images(writer, tag: str, frames: torch.Tensor, masks: torch.Tensor, step: int,
                    max_videos: int = 2) -> None:
    """Add slot grids of the first videos of a batch (frames (B, T, 3, H, W), masks (B, T, S, h, w)) to tensorboard."""
    for b in range(min(max_videos, frames.shape[0])):
        writer.add_image(f"{tag}/video{b}", slot_grid(frames[b], masks[b]), step)
