"""Kernel parity at the sizes the models really run, through the public dispatchers (GPU).

Slot attention at VideoSAUR's grouper on a batch of 256 clips x 6 frames: (B*T, K, N, D) = (1536, 7, 196, 128),
with 10% of the inputs padded; predictor attention at the CLEVRER predictor's batch: (B, H, L) = (256, 16, 112)
with the original's head width E = 8 (128 / 16 heads) and the wider heads of ``model.head_dim`` (16, 32, 64), on
the predictor's packed q/k/v views, with a key mask. Both in fp32 and bf16, forward and every input gradient,
against the torch references. ``python -m benchmarks.gpu_acceptance`` runs these before it times anything. The
same checks run at a tiny batch under the Triton interpreter on CPU, so the comparison itself is tested everywhere.
"""

from __future__ import annotations

import pytest
import torch

from cjepa.backends.attention import attention
from cjepa.backends.slot_update import slot_attention
from tests.helpers import assert_close_verbose
from tests.kernels.common import DEVICE, TOLERANCES, dtype_id, leaves, randn, requires_triton_runtime, seeded

SLOT_SHAPE = (1536, 7, 196, 128)  # (B*T, K, N, D)
PREDICTOR_SHAPES = [(256, 16, 112, e) for e in (8, 16, 32, 64)]  # (B, H, L, E)
DTYPES = [torch.float32, torch.bfloat16]


def check_slot_attention(shape, dtype) -> None:
    """Triton updates, attention and dq/dk/dv equal the reference's (fp32 inside both) to the dtype's rounding."""
    B, K, N, D = shape
    g = seeded(0)
    q, k, v = randn((B, K, D), g, dtype), randn((B, N, D), g, dtype), randn((B, N, D), g, dtype)
    input_mask = (torch.rand(B, N, generator=g) < 0.9).to(DEVICE)
    dout, dattn = randn((B, K, D), g), randn((B, K, N), g) * 0.01
    results = []
    for backend in ("torch", "triton"):  # "torch" is slot_attention_reference
        lq, lk, lv = leaves(q, k, v)
        upd, attn = slot_attention(lq, lk, lv, backend=backend, input_mask=input_mask)
        ((upd.float() * dout).sum() + (attn.float() * dattn).sum()).backward()
        results.append({"updates": upd, "attn": attn, "dq": lq.grad, "dk": lk.grad, "dv": lv.grad})
    want, got = results
    atol, rtol = TOLERANCES[dtype]
    for name in want:
        assert got[name].dtype == dtype, f"{name} came back as {got[name].dtype}"
        assert_close_verbose(got[name], want[name], atol, rtol, name=f"{name} {shape} {dtype_id(dtype)}")


def check_predictor_attention(shape, dtype) -> None:
    """Triton output and dq/dk/dv on packed (B, L, 3, H, E) views equal the fp32 reference on the same values."""
    B, H, L, E = shape
    g = seeded(3)
    qkv = randn((B, L, 3, H, E), g, dtype)
    key_mask = torch.rand(B, L, generator=g) < 0.8
    key_mask[:, 0] = True
    key_mask = key_mask.to(DEVICE)
    dout = randn((B, H, L, E), g)
    results = []
    for backend, x in (("torch", qkv.float()), ("triton", qkv)):  # "torch" is attention_reference
        leaf = leaves(x)[0]
        q, k, v = leaf.permute(2, 0, 3, 1, 4)
        out = attention(q, k, v, backend=backend, key_mask=key_mask)
        (out.float() * dout).sum().backward()
        results.append({"out": out, "dqkv": leaf.grad})
    want, got = results
    atol, rtol = TOLERANCES[dtype]
    for name in want:
        assert got[name].dtype == dtype, f"{name} came back as {got[name].dtype}"
        assert_close_verbose(got[name], want[name], atol, rtol, name=f"{name} {shape} {dtype_id(dtype)}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_slot_attention_at_videosaur_batch(dtype):
    check_slot_attention(SLOT_SHAPE, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", PREDICTOR_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_predictor_attention_at_clevrer_batch(shape, dtype):
    check_predictor_attention(shape, dtype)


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_the_checks_at_a_tiny_batch(dtype):
    """The same comparisons with the batch cut to 2 rows (interpreter-sized): the checks run and pass."""
    check_slot_attention((2,) + SLOT_SHAPE[1:], dtype)
    check_predictor_attention((1, 2, 112, 8), dtype)


@pytest.mark.interp
@requires_triton_runtime
def test_the_check_catches_a_wrong_kernel(monkeypatch):
    """A kernel off by a little more than the tolerance fails the check (the check is not vacuous)."""
    import sys

    real = slot_attention

    def off(*args, backend, **kw):
        upd, attn = real(*args, backend=backend, **kw)
        return (upd * 1.01 if backend == "triton" else upd), attn

    monkeypatch.setattr(sys.modules[__name__], "slot_attention", off)
    with pytest.raises(AssertionError, match="updates"):
        check_slot_attention((2,) + SLOT_SHAPE[1:], torch.float32)
