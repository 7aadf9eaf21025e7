"""The slot-attention update step, and its backend dispatch.

One iteration of slot attention (Locatello et al.; VideoSAUR's grouper, section 4.3 of the spec) after the
projections: logits = q k^T * scale over (slots x inputs); softmax over the **slot** axis (inputs compete for
slots); the attention plus ``eps`` is renormalised over the inputs, making each slot's update a weighted mean of
the values. :func:`slot_attention_reference` is the specification: the CPU path and the oracle of the Triton
kernel in ``kernels/slot_attention.py``, which :func:`slot_attention` dispatches to by ``kernels.slot_attention``.

Masks: ``slot_mask`` (B, K) marks active slots; inactive slots take no attention mass (their logits are -inf
before the softmax over slots) and get a zero update. ``input_mask`` (B, N) marks real inputs; padded inputs
take no mass in any slot and are excluded from the weighted mean (no eps either).

Degenerate rows are defined, not NaN: a row with no active slot gets zero attention and zero updates, and a slot
with no mass at all (inactive, or every input padded) gets a zero update, with finite (zero) gradients. Plain
``softmax`` over all -inf logits and a division by a clamped zero sum would instead put NaN or inf*0 into the
whole batch's gradients.
"""

from __future__ import annotations

import os

import torch

from cjepa.backends.attention import BackendUnavailable
from cjepa.backends.references import slot_attention_reference

BACKENDS = ("torch", "triton")


def check_backend(backend: str, device: torch.device | str | None = None) -> None:
    """Raise ``BackendUnavailable`` (from :mod:`cjepa.backends.attention`) naming why ``backend`` cannot run on
    ``device``."""
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown slot-attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "triton":
        on_cuda = device is not None and torch.device(device).type == "cuda"
        if not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise BackendUnavailable(
                f"kernels.slot_attention=triton needs CUDA tensors (got device {device}), or TRITON_INTERPRET=1 set "
                "before triton is imported for the slow CPU interpreter"
            )
        try:
            import cjepa_kernels.slot_attention  # noqa: F401
        except ImportError as err:
            raise BackendUnavailable(f"kernels.slot_attention=triton: cannot import the kernel ({err})") from err


def slot_attention(q, k, v, *, backend: str = "torch", eps: float = 1e-8, scale=None, slot_mask=None, input_mask=None):
    """Dispatch to the reference or the Triton kernel (same signature and results)."""
    if backend == "torch":
        return slot_attention_reference(q, k, v, eps=eps, scale=scale, slot_mask=slot_mask, input_mask=input_mask)
    if backend == "triton":
        if q.device.type != "cuda":  # a clear error instead of triton's "0 active drivers"
            check_backend(backend, q.device)
        from cjepa_kernels.slot_attention import slot_attention_triton  # optional dependency: triton, when chosen

        return slot_attention_triton(q, k, v, eps=eps, scale=scale, slot_mask=slot_mask, input_mask=input_mask)
    raise ValueError(f"unknown slot-attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")
