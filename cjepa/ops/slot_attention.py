"""The slot-attention update step, and its backend dispatch.

One iteration of slot attention (Locatello et al.; VideoSAUR's grouper, section 4.3 of the spec) after the
projections: logits = q k^T * scale over (slots x inputs); softmax over the **slot** axis (inputs compete for
slots); the attention plus ``eps`` is renormalised over the inputs, making each slot's update a weighted mean of
the values. :func:`slot_attention_reference` is the specification: the CPU path and the oracle of the Triton
kernel in ``kernels/slot_attention.py``, which :func:`slot_attention` dispatches to by ``kernels.slot_attention``.

Masks: ``slot_mask`` (B, K) marks active slots; inactive slots take no attention mass (their logits are -inf
before the softmax over slots) and get a zero update. ``input_mask`` (B, N) marks real inputs; padded inputs
take no mass in any slot and are excluded from the weighted mean (no eps either).
"""

from __future__ import annotations

from typing import Optional

import torch

BACKENDS = ("torch", "triton")


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
    1 over active slots for each real input. Math runs in fp32 and returns in v's dtype.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.einsum("bkd,bnd->bkn", q.float(), k.float()) * scale  # (B, K, N)
    if slot_mask is not None:
        logits = logits.masked_fill(~slot_mask[:, :, None], float("-inf"))
    attn = torch.softmax(logits, dim=1)  # over slots
    weights = attn + eps
    if slot_mask is not None:
        weights = weights * slot_mask[:, :, None]
    if input_mask is not None:
        keep = input_mask[:, None, :]
        attn = attn * keep
        weights = weights * keep
    weights = weights / weights.sum(dim=2, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)  # over inputs
    updates = torch.einsum("bkn,bnd->bkd", weights, v.float())
    return updates.to(v.dtype), attn.to(v.dtype)


def slot_attention(q, k, v, *, backend: str = "torch", eps: float = 1e-8, scale=None, slot_mask=None, input_mask=None):
    """Dispatch to the reference or the Triton kernel (same signature and results)."""
    if backend == "torch":
        return slot_attention_reference(q, k, v, eps=eps, scale=scale, slot_mask=slot_mask, input_mask=input_mask)
    if backend == "triton":
        from kernels.slot_attention import slot_attention_triton

        return slot_attention_triton(q, k, v, eps=eps, scale=scale, slot_mask=slot_mask, input_mask=input_mask)
    raise ValueError(f"unknown slot-attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")
