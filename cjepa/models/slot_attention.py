"""Slot attention (Locatello et al. 2020) as used by VideoSAUR and SAVi, and the slot initialisers.

One module serves both encoders; they differ only in options (sections 4.3 and 5):

================  =========================  ==========================
option            VideoSAUR                  SAVi (SlotFormer StoSAVi)
================  =========================  ==========================
``eps``           1e-8                       1e-6
``gru_hidden``    "normed" (LN-ed slots)     "raw" (previous slots)
``mlp_hidden``    0 (no residual MLP)        256 (LN -> MLP, residual)
================  =========================  ==========================

The update step itself (logits, softmax over **slots**, +eps, renormalisation over inputs, weighted mean) is
:func:`cjepa.backends.slot_update.slot_attention`, the reference that the Triton kernel replaces; this module
only adds the projections, the GRU and the optional MLP, so the backend is a constructor argument.

``slot_mask`` (B, S) bool marks active slots: inactive slots take no attention mass and keep their value.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from cjepa.backends.slot_update import slot_attention
from cjepa.models.object_encoder import sample_noise


class SlotAttention(nn.Module):
    """inputs (B, N, input_dim), slots (B, S, slot_dim) -> updated slots (B, S, slot_dim), attention (B, S, N)."""

    def __init__(
        self,
        input_dim: int,
        slot_dim: int,
        *,
        kvq_dim: Optional[int] = None,
        iters: int = 2,
        eps: float = 1e-8,
        gru_hidden: str = "normed",
        mlp_hidden: int = 0,
        backend: str = "torch",
    ):
        super().__init__()
        if gru_hidden not in ("normed", "raw"):
            raise ValueError(f"gru_hidden={gru_hidden!r}: choose 'normed' or 'raw'")
        kvq_dim = kvq_dim or slot_dim
        self.iters, self.eps, self.gru_hidden, self.backend = iters, eps, gru_hidden, backend
        self.scale = kvq_dim**-0.5
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.to_k = nn.Linear(input_dim, kvq_dim, bias=False)
        self.to_v = nn.Linear(input_dim, kvq_dim, bias=False)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.to_q = nn.Linear(slot_dim, kvq_dim, bias=False)
        self.gru = nn.GRUCell(kvq_dim, slot_dim)
        self.mlp = None
        if mlp_hidden:
            # residual LN -> Linear -> ReLU -> Linear after the GRU (indices 0, 1, 3 hold weights)
            self.mlp = nn.Sequential(
                nn.LayerNorm(slot_dim), nn.Linear(slot_dim, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, slot_dim)
            )

    def project_inputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, N, kvq_dim) of LayerNorm-ed inputs, computed once per frame."""
        x = self.norm_inputs(inputs)
        return self.to_k(x), self.to_v(x)

    def step(
        self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slot_mask: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One iteration: attention update + GRU (+ residual MLP). Returns slots and the pre-eps attention."""
        B, S, D = slots.shape
        normed = self.norm_slots(slots)
        q = self.to_q(normed)  # (B, S, kvq)
        updates, attn = slot_attention(q, keys, values, backend=self.backend, eps=self.eps, scale=self.scale,
                                       slot_mask=slot_mask)
        hidden = normed if self.gru_hidden == "normed" else slots  # Q14: VideoSAUR feeds the LN-ed slots
        new = self.gru(updates.reshape(B * S, -1), hidden.reshape(B * S, D)).view(B, S, D)
        if self.mlp is not None:
            new = new + self.mlp(new)
        if slot_mask is not None:
            new = torch.where(slot_mask[:, :, None], new, slots)  # inactive slots are left as they were
        return new, attn

    def forward(
        self,
        slots: torch.Tensor,
        inputs: torch.Tensor,
        iters: Optional[int] = None,
        slot_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.project_inputs(inputs)
        attn = None
        for _ in range(iters or self.iters):
            slots, attn = self.step(slots, keys, values, slot_mask)
        return slots, attn


class RandomSlotInit(nn.Module):
    """Slots = mu + sigma * eps with learned mu (init 0) and log sigma (init log(D^-1/2)) (VideoSAUR RandomInit).

    Every slot is exchangeable; the noise comes from ``generator`` when given, so extraction can be made
    deterministic per video (the original drew from the global RNG, Q15).
    """

    def __init__(self, num_slots: int, dim: int):
        super().__init__()
        self.num_slots, self.dim = num_slots, dim
        self.mean = nn.Parameter(torch.zeros(1, 1, dim))
        self.log_std = nn.Parameter(torch.full((1, 1, dim), math.log(dim**-0.5)))

    def forward(self, batch_size: int, generator=None) -> torch.Tensor:
        """``generator``: None (global RNG), a torch.Generator, or one Generator per batch row."""
        noise = sample_noise(
            (batch_size, self.num_slots, self.dim), device=self.mean.device, dtype=self.mean.dtype, generator=generator
        )
        return self.mean + noise * self.log_std.exp()  # (B, S, D)


class LearnedSlotInit(nn.Module):
    """One learned vector per slot, N(0, std^2) init (SAVi's ``init_latents`` use std 1)."""

    def __init__(self, num_slots: int, dim: int, std: float = 1.0):
        super().__init__()
        self.slots = nn.Parameter(torch.randn(1, num_slots, dim) * std)

    def forward(self, batch_size: int, generator=None) -> torch.Tensor:
        return self.slots.expand(batch_size, -1, -1)
