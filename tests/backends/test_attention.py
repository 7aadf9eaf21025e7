"""The attention reference (cjepa/backends/attention.py) under autocast."""

import torch

from cjepa.backends.attention import attention_reference
from tests.helpers import assert_close_verbose


def test_reference_math_stays_fp32_under_autocast():
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
