"""Attention dispatch: the one place where model code reaches a kernel backend.

Models call :func:`attention` with (B, H, L, E) tensors; the backend comes from ``kernels.attention`` in the
config. ``torch`` is the reference (explicit math, the CPU default and the oracle for every kernel test);
``sdpa`` is torch's fused scaled_dot_product_attention; ``triton`` is our kernel in ``kernels/``; ``flash_attn``
is the optional flash-attn package. A backend that cannot run here raises :class:`BackendUnavailable` when
the model is built, never silently falls back.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from cjepa.backends.references import attention_reference

BACKENDS = ("torch", "sdpa", "triton", "flash_attn")


class BackendUnavailable(RuntimeError):
    """The configured kernel backend cannot run on this machine."""


def _sdpa(q, k, v, key_mask, dropout_p):
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def _flash(q, k, v, key_mask, dropout_p):
    from flash_attn import flash_attn_func  # import checked in check_backend

    if key_mask is not None:
        raise BackendUnavailable("kernels.attention=flash_attn does not take a key mask; use triton or sdpa")
    # flash-attn takes fp16/bf16 only, while fp32 reaches attention in validation, rollout and fp32 training
    # (train.precision=fp32, the default). Refusing fp32 at config validation would still break validation and
    # rollout, which run without autocast, so fp32 (and fp64) inputs are cast to bf16 here (bf16 keeps fp32's range;
    # fp16 could overflow in the scores) and the output is cast back. The price: attention computed from bf16
    # inputs, ~3 significant digits; use sdpa or torch for exact fp32 attention.
    dtype = q.dtype
    compute = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    q, k, v = (t.transpose(1, 2).to(compute) for t in (q, k, v))  # (B, L, H, E), flash-attn's layout
    out = flash_attn_func(q, k, v, dropout_p=dropout_p)
    return out.transpose(1, 2).to(dtype)


def _triton(q, k, v, key_mask, dropout_p):
    from cjepa_kernels.predictor_attention import predictor_attention  # optional dependency: triton, when chosen

    if dropout_p > 0:
        raise BackendUnavailable(
            "kernels.attention=triton has no attention-weight dropout; set model.dropout=0 or use sdpa"
        )
    if q.shape[2] != k.shape[2]:
        # Cross-attention (VideoSAUR's SlotMixer decoder: 196 patch queries over 7 slots) goes to SDPA. The kernel
        # is built for the predictor's square self-attention over <= ~128 tokens (one program walks both the query
        # and the key blocks of a sequence in its backward); a 7-key row would be padded to a 16-key tile, and
        # this one small launch per decoder layer is not where the time goes.
        return _sdpa(q, k, v, key_mask, dropout_p)
    return predictor_attention(q, k, v, key_mask)


def check_backend(backend: str, device: torch.device | str | None = None) -> None:
    """Raise BackendUnavailable with the reason if `backend` cannot run on `device`."""
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown attention backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    dev = torch.device(device) if device is not None else None
    if backend in ("triton", "flash_attn"):
        on_cuda = dev is not None and dev.type == "cuda"
        import os

        if backend == "triton" and not on_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise BackendUnavailable(
                "kernels.attention=triton needs a CUDA device (or TRITON_INTERPRET=1 for the slow CPU interpreter)"
            )
        if backend == "flash_attn":
            if not on_cuda:
                raise BackendUnavailable("kernels.attention=flash_attn needs a CUDA device")
            try:
                import flash_attn  # noqa: F401
            except ImportError as err:
                raise BackendUnavailable(
                    "kernels.attention=flash_attn but the flash-attn package is not installed "
                    "(no prebuilt wheel exists for every torch; sdpa includes a FlashAttention kernel)"
                ) from err
        if backend == "triton":
            try:
                import cjepa_kernels.predictor_attention  # noqa: F401
            except ImportError as err:
                raise BackendUnavailable(f"kernels.attention=triton: cannot import the kernel ({err})") from err


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    backend: str = "torch",
    key_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Multi-head attention core on (B, H, L, E) inputs with the chosen backend."""
    if backend == "torch":
        return attention_reference(q, k, v, key_mask, dropout_p)[0]
    if backend == "sdpa":
        return _sdpa(q, k, v, key_mask, dropout_p)
    if backend == "triton":
        return _triton(q, k, v, key_mask, dropout_p)
    if backend == "flash_attn":
        return _flash(q, k, v, key_mask, dropout_p)
    raise BackendUnavailable(f"unknown attention backend {backend!r}")
