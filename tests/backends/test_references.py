"""The torch references (cjepa/backends/references.py) under autocast."""

import pytest
import torch

from cjepa.backends.references import attention_reference, slot_attention_reference
from tests.helpers import assert_close_verbose


def test_attention_reference_math_stays_fp32_under_autocast():
    """Under bf16 autocast, fp32 inputs give exactly the fp32 result computed outside autocast, in fp32: autocast
    must not turn the reference's matmuls into bf16 ones, since the Triton kernel it is the oracle of computes
    them in fp32 whatever autocast says. (bf16 inputs compute in bf16 either way.)"""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn((2, 2, 13, 16), generator=g) for _ in range(3))
    key_mask = torch.rand(2, 13, generator=g) < 0.7
    key_mask[:, 0] = True
    want, want_w = attention_reference(q, k, v, key_mask, need_weights=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, got_w = attention_reference(q, k, v, key_mask, need_weights=True)
    assert got.dtype == torch.float32 and got_w.dtype == torch.float32
    assert_close_verbose(got, want, 1e-6, 1e-6, "out")
    assert_close_verbose(got_w, want_w, 1e-6, 1e-6, "weights")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_slot_attention_reference_math_stays_fp32_under_autocast(dtype):
    """Under bf16 autocast the reference gives exactly what it gives outside autocast (math in fp32, results in
    v's dtype): autocast must not turn its fp32 einsums into bf16 ones, or the torch and Triton backends (the
    kernel computes in fp32 whatever autocast says) drift apart in bf16 training."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(s, generator=g).to(dtype) for s in ((2, 5, 16), (2, 30, 16), (2, 30, 24)))
    slot_mask = torch.rand(2, 5, generator=g) < 0.7
    slot_mask[:, 0] = True
    want = slot_attention_reference(q, k, v, slot_mask=slot_mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = slot_attention_reference(q, k, v, slot_mask=slot_mask)
    for name, a, b in zip(("updates", "attn"), got, want):
        assert a.dtype == dtype, f"{name} came back as {a.dtype} under autocast"
        assert_close_verbose(a, b, 1e-6, 1e-6, name)
