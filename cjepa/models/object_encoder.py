"""The fused object-centric encoder interface: decoded frames -> slots + slot masks, on one device.

Both encoders (:class:`cjepa.models.videosaur.VideoSAUR`, :class:`cjepa.models.savi.SAVi`) take the decoded clip
batch of the data contract, ``frames: float32 (B, T, 3, H, W)`` ImageNet-normalised, and run resize -> frame
encoder (DINOv2 or CNN) -> slot attention with temporal propagation -> (decoder masks) without leaving the device
(no ``.item()``, no host copies). Training (:meth:`training_losses`) and extraction (:meth:`encode`) share that
path, so the resize and normalisation seen at extraction are exactly those of training (the original resized
differently in the two, Q15). Non-square frames are squashed to the square model input (as the original does
with CLEVRER's 480x320, Q16).

Randomness (slot init, SAVi's kernel sampling) comes from an optional ``torch.Generator`` on the model's device:
extraction seeds one per video, training one per step, so results do not depend on batch composition or on
the global RNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn


@dataclass
class SlotOutput:
    """What :meth:`ObjectCentricEncoder.encode` returns."""

    slots: torch.Tensor  # (B, T, S, D) the corrected (post slot-attention) slots, the ones stored downstream
    masks: Optional[torch.Tensor]  # (B, T, S, h, w) soft masks summing to 1 over S, or None if not asked for
    aux: dict[str, torch.Tensor] = field(default_factory=dict)  # model-specific tensors the losses need


def sample_noise(shape: tuple[int, ...], *, device, dtype, generator=None) -> torch.Tensor:
    """Standard-normal noise of `shape`; ``generator`` is None (global RNG), one Generator, or one per batch row.

    Per-row generators make each sample's noise independent of which other samples share its batch, so slot
    extraction gives the same slots for a video whether it is encoded alone or with others.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, device=device, dtype=dtype, generator=generator)
    gens = list(generator)
    if len(gens) != shape[0]:
        raise ValueError(f"{len(gens)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(shape[1:], device=device, dtype=dtype, generator=g) for g in gens])


def check_frames(frames: torch.Tensor) -> None:
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ValueError(f"frames must be (B, T, 3, H, W); got {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be float (ImageNet-normalised); got dtype {frames.dtype}")


def first_frame_cues(instance_masks: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Conditioning cues of conditional SAVi from first-frame instance masks.

    instance_masks (B, H, W) integer ids, 0 = background -> cues (B, S, 3) = (present, y, x), y and x the object's
    centre of mass in [-1, 1]. Slot 0 (background) never gets a cue; slot 1 + j gets the j-th visible object in
    ascending id order; objects beyond S - 1 and slots without an object get (0, 0, 0).

    A data-path helper, not part of the model: it reads each sample's object ids on the host, so it takes the
    batch's CPU masks before the transfer (callers move the small cue tensor); on an accelerator each read would
    wait for the device.
    """
    if instance_masks.dim() != 3 or instance_masks.is_floating_point():
        raise ValueError(f"instance masks must be integer (B, H, W); got {tuple(instance_masks.shape)} "
                         f"{instance_masks.dtype}")
    if instance_masks.device.type != "cpu":
        raise ValueError(
            f"instance masks are on {instance_masks.device}: compute cues from the CPU masks before moving the batch "
            "(finding the object ids reads them on the host)"
        )
    B, H, W = instance_masks.shape
    cues = torch.zeros(B, num_slots, 3, dtype=torch.float32, device=instance_masks.device)
    ys = torch.linspace(-1.0, 1.0, H, device=instance_masks.device)[:, None].expand(H, W)
    xs = torch.linspace(-1.0, 1.0, W, device=instance_masks.device)[None, :].expand(H, W)
    for b in range(B):
        ids = [i for i in torch.unique(instance_masks[b]).tolist() if i != 0][: num_slots - 1]
        for j, obj in enumerate(ids):
            m = (instance_masks[b] == obj).float()
            n = m.sum()
            cues[b, 1 + j] = torch.stack([torch.ones((), device=m.device), (m * ys).sum() / n, (m * xs).sum() / n])
    return cues


class ObjectCentricEncoder(nn.Module):
    """Common interface of the slot encoders (see the module docstring)."""

    num_slots: int
    slot_dim: int
    loss_names: tuple[str, ...]  # the keys training_losses returns, in a fixed order (for cross-rank reductions)
    needs_cues = False  # conditional encoders start from first-frame object cues (see first_frame_cues)

    def encode(
        self,
        frames: torch.Tensor,
        *,
        generator: Optional[torch.Generator] = None,
        init_slots: Optional[torch.Tensor] = None,
        masks: bool = True,
        cues: Optional[torch.Tensor] = None,
    ) -> SlotOutput:
        raise NotImplementedError

    def training_losses(
        self, frames: torch.Tensor, *, generator: Optional[torch.Generator] = None, cues: Optional[torch.Tensor] = None
    ) -> tuple[dict[str, torch.Tensor], SlotOutput]:
        """Named scalar losses (``loss`` is the total) and the slots/masks of the clip."""
        raise NotImplementedError

    def forward(
        self, frames: torch.Tensor, generator: Optional[torch.Generator] = None, cues: Optional[torch.Tensor] = None
    ) -> tuple[dict[str, torch.Tensor], SlotOutput]:
        # The training loss is the forward pass, so a DDP wrapper sees it and all-reduces the gradients
        # (calling a method of the unwrapped module would skip the reduction, Q10).
        return self.training_losses(frames, generator=generator, cues=cues)

    def check_cues(self, cues: Optional[torch.Tensor], batch_size: int) -> None:
        """Conditional encoders need (B, S, 3) cues; unconditional ones must not silently ignore them."""
        if not self.needs_cues:
            if cues is not None:
                raise ValueError(f"{type(self).__name__} is not conditional: it takes no first-frame cues")
            return
        if cues is None:
            raise ValueError(
                f"{type(self).__name__} starts from first-frame object cues (encoder.savi.init=cues): pass cues from "
                "the first frame's instance masks (first_frame_cues); the video source must have instance masks"
            )
        if tuple(cues.shape) != (batch_size, self.num_slots, 3):
            raise ValueError(f"cues must be (B, S, 3) = ({batch_size}, {self.num_slots}, 3); got {tuple(cues.shape)}")

    def describe(self) -> dict:
        """A few facts for logs (sizes, options, whether the backbone is pretrained)."""
        return {}

