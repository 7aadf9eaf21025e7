"""Dropout whose mask is cheap to draw on a CPU.

torch's CPU dropout draws one Bernoulli sample per element from its Mersenne-Twister generator in a single thread
(only Intel CPUs with MKL get a vectorised Bernoulli kernel), so on other x86 CPUs drawing the masks of the C-JEPA
predictor (attention weights (B, H, L, L) and the 2048-wide feed-forward, in every layer) costs about a quarter of
a training step. Here a CPU mask is read from 16-bit fields of 64-bit draws of the same generator, four elements
per draw: an element is dropped when its field is below ``round(p * 2**16)``, so the drop probability is ``p``
rounded to a multiple of 2**-16 (0.1 -> 0.100006), and kept elements are scaled by ``1 / (1 - p_used)`` so the
expectation is exactly the input's. Masks stay a function of the global seed (``torch.manual_seed``): same seed,
same masks. Other devices use ``torch.nn.functional.dropout`` (their kernels draw in parallel).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FIELD_BITS = 16
_FIELDS_PER_DRAW = 64 // FIELD_BITS


def drop_threshold(p: float) -> int:
    """The number of the 2**16 field values that drop an element: round(p * 2**16), at least 1 for p > 0."""
    return max(1, round(p * 2**FIELD_BITS)) if p > 0 else 0


def cpu_keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
    """Bool keep mask of ``shape`` with P(drop) = drop_threshold(p) / 2**16, from ceil(numel / 4) 64-bit draws."""
    numel = 1
    for s in shape:
        numel *= s
    draws = torch.empty(-(-numel // _FIELDS_PER_DRAW), dtype=torch.int64).random_(-(2**63), None)
    fields = draws.view(torch.int16)[:numel].view(shape)  # uniform over [-2**15, 2**15)
    return fields >= -(2 ** (FIELD_BITS - 1)) + drop_threshold(p)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)``, with the cheap mask on a CPU (see the module docstring)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    keep = cpu_keep_mask(x.shape, p)
    scale = 1.0 / (1.0 - drop_threshold(p) / 2**FIELD_BITS)
    return torch.where(keep, x * scale, x.new_zeros(()))


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout` (same options and repr; no parameters, so no state_dict keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
