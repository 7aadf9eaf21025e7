"""The torch references of the two kernel-backed operations: the specification each Triton kernel in
``kernels/`` must match, the ``torch`` backend of the dispatch modules, and the oracle of every kernel test.

* :func:`attention_reference`: softmax(q k^T / sqrt(E)) v with an optional key mask (dispatched by
  :mod:`cjepa.backends.attention`).
* :func:`slot_attention_reference`: the slot-attention update step (dispatched by
  :mod:`cjepa.backends.slot_update`, whose docstring states its masking and degenerate-row rules).

They sit below both the dispatch modules and the kernels, which import them: a kernel names its reference, and a
dispatch module imports the kernel only when it is chosen.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from cjepa.backends.dropout import dropout


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """softmax(q k^T / sqrt(E)) v with dropout on the attention weights, as nn.MultiheadAttention does.

    q, k, v: (B, H, L, E); key_mask: (B, L) bool, True = key may be attended to.
    Returns the output (B, H, L, E) and, if asked, the pre-dropout weights (B, H, L, L).
    The math runs in the inputs' dtype (softmax in fp32 for half inputs) also under autocast, which is switched
    off here: it would run fp32 inputs' matmuls in bf16/fp16, and the Triton kernel, which autocast does not
    reach, computes them in fp32. Model code under autocast hands this function bf16 projections anyway.
    """
    with torch.autocast(device_type=q.device.type, enabled=False):
        return _attention_math(q, k, v, key_mask, dropout_p, need_weights)


def attention_probabilities(q: torch.Tensor, k: torch.Tensor, key_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(E)) (B, H, L, L) from (B, H, L, E) inputs, in fp32 (fp64 stays fp64): the eager math
    of :func:`attention_reference`, for reading what a layer attends to whatever backend computed its output."""
    with torch.autocast(device_type=q.device.type, enabled=False):
        return _probabilities(q, k, key_mask)


def _probabilities(q, k, key_mask):
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q * scale, k.transpose(-1, -2))  # (B, H, L, L)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    # softmax in fp32 for half inputs; fp64 stays fp64 so gradcheck can check this function
    return torch.softmax(scores.to(torch.promote_types(scores.dtype, torch.float32)), dim=-1)


def _attention_math(q, k, v, key_mask, dropout_p, need_weights):
    weights = _probabilities(q, k, key_mask).to(q.dtype)
    dropped = dropout(weights, dropout_p) if dropout_p > 0 else weights  # nn.MultiheadAttention's weight dropout
    out = torch.matmul(dropped, v)
    return out, (weights if need_weights else None)


def slot_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    eps: float = 1e-8,
    scale: Optional[float] = None,
    slot_mask: Optional[torch.Tensor] = None,
    input_mask: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, K, Dk), k (B, N, Dk), v (B, N, Dv) -> updates (B, K, Dv), attention (B, K, N).

    ``attention`` is the softmax over slots before eps/renormalisation (the slot masks of VideoSAUR); it sums to
    1 over active slots for each real input and is 0 at padded inputs. ``scale`` defaults to Dk**-0.5.
    Math runs in fp32 (fp64 inputs stay fp64, so ``gradcheck`` can check this function) and the results come
    back in v's dtype, also under autocast: autocast would run the einsums in bf16/fp16 whatever their inputs'
    dtype, so it is switched off here, as the Triton kernel (fp32 inside) is not affected by it either.
    """
    with torch.autocast(device_type=q.device.type, enabled=False):
        return _slot_attention_math(q, k, v, eps=eps, scale=scale, slot_mask=slot_mask, input_mask=input_mask)


def _slot_attention_math(q, k, v, *, eps, scale, slot_mask, input_mask):
    compute = torch.promote_types(v.dtype, torch.float32)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.einsum("bkd,bnd->bkn", q.to(compute), k.to(compute)) * scale  # (B, K, N)
    if slot_mask is not None:
        logits = logits.masked_fill(~slot_mask[:, :, None], float("-inf"))
        # A row without any active slot: finite logits, then the mask below zeroes its attention.
        logits = logits.masked_fill(~slot_mask.any(dim=1)[:, None, None], 0.0)
    attn = torch.softmax(logits, dim=1)  # over slots
    if slot_mask is not None:
        attn = attn * slot_mask[:, :, None]
    weights = attn + eps
    if slot_mask is not None:
        weights = weights * slot_mask[:, :, None]
    if input_mask is not None:
        keep = input_mask[:, None, :]
        attn = attn * keep
        weights = weights * keep
    mass = weights.sum(dim=2, keepdim=True)  # (B, K, 1)
    # A zero mass means every weight of the slot is zero: dividing by 1 keeps the update (and gradient) at zero.
    weights = weights / torch.where(mass > 0, mass, torch.ones_like(mass))  # renormalised over inputs
    updates = torch.einsum("bkn,bnd->bkd", weights, v.to(compute))
    return updates.to(v.dtype), attn.to(v.dtype)
