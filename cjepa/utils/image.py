"""Frames as the models see them: the ImageNet statistics every stage normalises with, their inverse, and the
one frame resize.

Data workers (:func:`cjepa.data.video.preprocess_frames`) and the encoders (VideoSAUR's backbone input, SAVi's
resolution) resample frames through :func:`resize_frames` alone: bilinear with antialiasing, corners not aligned.
The original resized differently in training, extraction and planning (Q15); one function keeps the three stages
on the same pixels.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_frames(frames: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """(..., C, H, W) -> (..., C, h, w), ``size`` = (h, w) or one side: bilinear with antialiasing.

    Float frames stay float. Bilinear weights sum to one, so resizing commutes with the per-channel ImageNet
    normalisation: normalising before or after gives the same input (it did not in the original, Q15). uint8
    frames come back uint8, as from torchvision's uint8 path: on CPU torch's vectorised fixed-point uint8 kernel
    (fastest on channels-last frames; within one grey level of the float kernel), elsewhere the float kernel,
    rounded. The same size returns ``frames`` itself.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(frames.shape[-2:]) == (h, w):
        return frames
    lead, (C, H, W) = frames.shape[:-3], frames.shape[-3:]
    x = frames if frames.dim() == 4 else frames.reshape(-1, C, H, W)  # (N, C, H, W); 4-d keeps its memory format
    if x.dtype == torch.uint8 and x.device.type != "cpu":
        out = F.interpolate(x.float(), size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    else:
        out = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out if frames.dim() == 4 else out.view(*lead, C, h, w)


def imagenet_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation on the channel axis (-3): values back in [0, 1] (not clamped)."""
    shape = [1] * frames.dim()
    shape[-3] = 3
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device, dtype=frames.dtype).view(shape)
    std = torch.tensor(IMAGENET_STD, device=frames.device, dtype=frames.dtype).view(shape)
    return frames * std + mean
