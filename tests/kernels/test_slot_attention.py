"""Parity of the fused slot-attention kernel (kernels/slot_attention.py) with its torch reference.

Reference: cjepa.backends.references.slot_attention_reference. Forward (updates, attention map) and backward
(dq, dk, dv, through both outputs) are compared over real and odd shapes, mask patterns and dtypes.
"""

from __future__ import annotations

import pytest
import torch

from cjepa.backends.attention import BackendUnavailable
from cjepa.backends.references import slot_attention_reference
from cjepa.backends.slot_update import check_backend, slot_attention
from tests.helpers import assert_close_verbose
from tests.kernels.common import (
    DEVICE,
    INTERPRETED,
    ON_GPU,
    PRECISION_CASES,
    TOLERANCES,
    dtype_id,
    leaves,
    precision_case_id,
    randn,
    requires_triton_runtime,
    seeded,
    shapes,
    tf32_dots,
)

# (B, K, N, Dk, Dv). CPU: tiny and odd (non-power-of-2 everywhere, K = 11, a single element), plus N = 196 with
# small D to cover several input blocks. GPU adds the real sizes: VideoSAUR (7 slots x 196 patches), SAVi's
# 64x64 grid (4096 inputs; few rows -> the split-N path), D = 256, and an odd large one.
SHAPES = shapes(
    cpu=[(2, 7, 37, 24, 20), (3, 4, 16, 16, 16), (2, 11, 50, 33, 17), (1, 1, 1, 1, 1), (1, 5, 196, 8, 12)],
    gpu=[(96, 7, 196, 128, 128), (4, 6, 4096, 64, 64), (16, 11, 196, 256, 256), (5, 7, 123, 123, 123)],
)
MASKS = ["none", "all_on", "partial", "all_off"]


def _masks(mode: str, B: int, K: int, N: int, gen: torch.Generator):
    """(slot_mask, input_mask) for a mode; 'all_off' switches everything off in row 0 (slots) and row 1 (inputs)."""
    if mode == "none":
        return None, None
    slot = torch.ones(B, K, dtype=torch.bool)
    inp = torch.ones(B, N, dtype=torch.bool)
    if mode in ("partial", "all_off"):
        slot = torch.rand(B, K, generator=gen) < 0.7
        slot[:, 0] = True  # at least one active slot per row, except where all_off says otherwise
        inp = torch.rand(B, N, generator=gen) < 0.75
    if mode == "all_off":
        slot[0] = False
        inp[min(1, B - 1)] = False
    return slot.to(DEVICE), inp.to(DEVICE)


def _inputs(B, K, N, Dk, Dv, dtype, seed=0):
    g = seeded(seed)
    return randn((B, K, Dk), g, dtype), randn((B, N, Dk), g, dtype), randn((B, N, Dv), g, dtype)


def _run(fn, q, k, v, dout, dattn, **kw):
    """Forward, then backward of <updates, dout> + <attn, dattn>; returns outputs and input gradients."""
    q, k, v = leaves(q, k, v)
    upd, attn = fn(q, k, v, **kw)
    loss = (upd.float() * dout).sum() if dout is not None else 0.0
    if dattn is not None:
        loss = loss + (attn.float() * dattn).sum()
    loss.backward()
    return {"updates": upd, "attn": attn, "dq": q.grad, "dk": k.grad, "dv": v.grad}


def _compare(got: dict, want: dict, dtype, where: str) -> None:
    """dtype: a TOLERANCES key, or an (atol, rtol) pair."""
    atol, rtol = TOLERANCES[dtype] if isinstance(dtype, torch.dtype) else dtype
    for name in want:
        assert_close_verbose(got[name], want[name], atol, rtol, name=f"{name} [{where}]")


def _triton(q, k, v, **kw):
    from cjepa_kernels.slot_attention import slot_attention_triton

    return slot_attention_triton(q, k, v, **kw)


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("mask_mode", MASKS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_parity_fp32(shape, mask_mode):
    """fp32 updates, attention and dq/dk/dv match the reference for every shape and mask pattern."""
    B, K, N, Dk, Dv = shape
    q, k, v = _inputs(*shape, torch.float32)
    slot_mask, input_mask = _masks(mask_mode, B, K, N, seeded(1))
    g = seeded(2)
    dout, dattn = randn((B, K, Dv), g), randn((B, K, N), g)
    kw = dict(eps=1e-8, slot_mask=slot_mask, input_mask=input_mask)
    want = _run(slot_attention_reference, q, k, v, dout, dattn, **kw)
    got = _run(_triton, q, k, v, dout, dattn, **kw)
    _compare(got, want, torch.float32, f"{shape} masks={mask_mode}")


DTYPE_SHAPES = [(2, 7, 37, 24, 20)] + ([(64, 7, 196, 128, 128), (4, 6, 4096, 64, 64)] if ON_GPU else [])


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("mask_mode", ["none", "partial"])
@pytest.mark.parametrize("shape", DTYPE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_parity_half(shape, mask_mode, dtype):
    """bf16/fp16 inputs: the kernel upcasts to fp32 inside, so it matches the reference (also fp32 inside) to the
    output dtype's rounding."""
    B, K, N, Dk, Dv = shape
    q, k, v = _inputs(*shape, dtype)
    slot_mask, input_mask = _masks(mask_mode, B, K, N, seeded(1))
    g = seeded(2)
    dout, dattn = randn((B, K, Dv), g), randn((B, K, N), g)
    kw = dict(slot_mask=slot_mask, input_mask=input_mask)
    want = _run(slot_attention_reference, q, k, v, dout, dattn, **kw)
    got = _run(_triton, q, k, v, dout, dattn, **kw)
    for name, t in got.items():
        assert t.dtype == dtype, f"{name} came back as {t.dtype}, expected {dtype}"
    _compare(got, want, dtype, f"{shape} {dtype_id(dtype)} masks={mask_mode}")


@pytest.mark.interp
@requires_triton_runtime
def test_mixed_input_dtypes():
    """fp32 queries with bf16 keys/values (as autocast can produce): like the reference, the kernel upcasts each
    input, returns results in v's dtype and each gradient in its input's dtype."""
    B, K, N, Dk, Dv = 2, 5, 21, 16, 12
    q, k, v = _inputs(B, K, N, Dk, Dv, torch.float32, seed=14)
    k, v = k.bfloat16(), v.bfloat16()
    g = seeded(15)
    dout, dattn = randn((B, K, Dv), g), randn((B, K, N), g)
    want = _run(slot_attention_reference, q, k, v, dout, dattn)
    got = _run(_triton, q, k, v, dout, dattn)
    assert (got["updates"].dtype, got["dq"].dtype, got["dk"].dtype) == (torch.bfloat16, torch.float32, torch.bfloat16)
    _compare(got, want, torch.bfloat16, "q fp32, k/v bf16")


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("splits", [2, 3])
def test_split_n_matches_single_pass(splits):
    """Splitting the inputs over several programs (partial sums added on the host) changes nothing: this is the
    path few-row / many-input calls (SAVi grids) take on a GPU."""
    from cjepa_kernels.slot_attention import SlotAttentionLaunch

    B, K, N, Dk, Dv = 2, 5, 70, 16, 24
    q, k, v = _inputs(B, K, N, Dk, Dv, torch.float32, seed=3)
    slot_mask, input_mask = _masks("partial", B, K, N, seeded(4))
    g = seeded(5)
    dout, dattn = randn((B, K, Dv), g), randn((B, K, N), g)
    kw = dict(slot_mask=slot_mask, input_mask=input_mask)
    want = _run(slot_attention_reference, q, k, v, dout, dattn, **kw)
    launch = SlotAttentionLaunch(block_n_fwd=16, warps_fwd=4, block_n_bwd=32, warps_bwd=4, splits=splits)
    got = _run(_triton, q, k, v, dout, dattn, launch=launch, **kw)
    _compare(got, want, torch.float32, f"splits={splits}")


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("used", ["updates_only", "attn_only"])
def test_backward_with_one_output_unused(used):
    """When only one output feeds the loss, autograd hands the kernel None for the other, and the gradients still
    match the reference."""
    B, K, N, Dk, Dv = 2, 4, 23, 16, 8
    q, k, v = _inputs(B, K, N, Dk, Dv, torch.float32, seed=6)
    g = seeded(7)
    dout = randn((B, K, Dv), g) if used == "updates_only" else None
    dattn = randn((B, K, N), g) if used == "attn_only" else None
    want = _run(slot_attention_reference, q, k, v, dout, dattn)
    got = _run(_triton, q, k, v, dout, dattn)
    if want["dv"] is None:  # the attention map does not depend on v: torch leaves no gradient, the kernel a zero one
        assert got["dv"] is None or torch.count_nonzero(got["dv"]) == 0
        want["dv"] = got["dv"] = torch.zeros(())
    _compare({n: got[n] for n in ("dq", "dk", "dv")}, {n: want[n] for n in ("dq", "dk", "dv")}, torch.float32, used)


@pytest.mark.interp
@requires_triton_runtime
def test_strided_inputs_need_no_copy():
    """k and v as views of one packed projection (B, N, 2, D), q transposed: read through strides, same results."""
    B, K, N, D = 2, 3, 29, 16
    g = seeded(8)
    kv = randn((B, N, 2, D), g)
    q = randn((B, D, K), g).transpose(1, 2)
    k, v = kv[:, :, 0], kv[:, :, 1]
    assert not k.is_contiguous() and not q.is_contiguous()
    dout, dattn = randn((B, K, D), g), randn((B, K, N), g)
    want = _run(slot_attention_reference, q, k, v, dout, dattn)
    got = _run(_triton, q, k, v, dout, dattn)
    _compare(got, want, torch.float32, "strided")


@pytest.mark.interp
@requires_triton_runtime
def test_degenerate_rows_give_zero_updates_and_finite_gradients():
    """A row with no active slot, and a row with every input padded, give zero attention and zero updates, and
    all gradients stay finite, in the kernel and in the reference alike."""
    B, K, N, Dk, Dv = 2, 4, 9, 8, 8
    q, k, v = _inputs(B, K, N, Dk, Dv, torch.float32, seed=9)
    slot_mask = torch.ones(B, K, dtype=torch.bool, device=DEVICE)
    slot_mask[0] = False
    input_mask = torch.ones(B, N, dtype=torch.bool, device=DEVICE)
    input_mask[1] = False
    g = seeded(10)
    dout, dattn = randn((B, K, Dv), g) * 100, randn((B, K, N), g) * 100  # large: inf * 0 would show up as NaN
    for fn in (slot_attention_reference, _triton):
        out = _run(fn, q, k, v, dout, dattn, slot_mask=slot_mask, input_mask=input_mask)
        assert torch.count_nonzero(out["updates"]) == 0 and torch.count_nonzero(out["attn"]) == 0, fn.__name__
        for name in ("dq", "dk", "dv"):
            assert torch.isfinite(out[name]).all(), f"{fn.__name__}: non-finite {name}"
            assert torch.count_nonzero(out[name]) == 0, f"{fn.__name__}: {name} should be zero"


@pytest.mark.interp
@requires_triton_runtime
def test_bad_inputs_raise_clear_errors():
    """Wrong ranks, mismatched sizes, mixed dtypes and malformed masks are rejected with the offending shapes."""
    from cjepa_kernels.slot_attention import slot_attention_triton

    q, k, v = _inputs(2, 3, 5, 4, 4, torch.float32)
    with pytest.raises(ValueError, match="q \\(B,K,Dk\\)"):
        slot_attention_triton(q[0], k, v)
    with pytest.raises(ValueError, match="empty input"):
        slot_attention_triton(q, k[:, :0], v[:, :0])
    with pytest.raises(ValueError, match="disagree"):
        slot_attention_triton(q, k[:, :, :3], v)
    with pytest.raises(TypeError, match="fp32/bf16/fp16"):
        slot_attention_triton(q, k.double(), v)
    with pytest.raises(ValueError, match="slot_mask must be a bool tensor of shape \\(2, 3\\)"):
        slot_attention_triton(q, k, v, slot_mask=torch.ones(2, 4, dtype=torch.bool, device=DEVICE))
    with pytest.raises(ValueError, match="input_mask"):
        slot_attention_triton(q, k, v, input_mask=torch.ones(2, 5, device=DEVICE))


@pytest.mark.interp
@requires_triton_runtime
def test_dispatcher_routes_to_the_kernel():
    """slot_attention(..., backend="triton") returns the kernel's results; backend="torch" the reference's."""
    q, k, v = _inputs(2, 3, 11, 8, 8, torch.float32, seed=11)
    upd_t, attn_t = slot_attention(q, k, v, backend="triton")
    upd_r, attn_r = slot_attention(q, k, v, backend="torch")
    assert_close_verbose(upd_t, upd_r, *TOLERANCES[torch.float32], name="updates")
    assert_close_verbose(attn_t, attn_r, *TOLERANCES[torch.float32], name="attn")


def test_backend_errors_are_clear(monkeypatch):
    """Unknown backends and a triton backend that cannot run here fail with a message naming the config key."""
    with pytest.raises(ValueError, match="unknown slot-attention backend 'cuda'"):
        slot_attention(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), backend="cuda")
    with pytest.raises(BackendUnavailable, match="unknown slot-attention backend"):
        check_backend("fused")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="kernels.slot_attention=triton needs CUDA"):
        check_backend("triton", "cpu")


def test_reference_gradcheck_fp64():
    """The reference's own gradients (the oracle of every kernel test) are right: gradcheck in fp64 with masks and
    through both outputs."""
    g = seeded(12)
    B, K, N, D = 2, 3, 4, 3
    q, k, v = (torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
               for s in ((B, K, D), (B, N, D), (B, N, D)))
    slot_mask = torch.tensor([[True, False, True], [True, True, True]])
    input_mask = torch.tensor([[True, True, False, True], [True, True, True, False]])

    def fn(q, k, v):
        upd, attn = slot_attention_reference(q, k, v, eps=1e-3, slot_mask=slot_mask, input_mask=input_mask)
        return upd, attn

    assert torch.autograd.gradcheck(fn, (q, k, v), eps=1e-6, atol=1e-6)


def test_reference_attention_is_a_softmax_over_active_slots():
    """The reference's attention sums to 1 over active slots at every real input, is 0 elsewhere, and each update
    is the eps-smoothed attention-weighted mean of the values (checked against an explicit loop)."""
    g = seeded(13)
    B, K, N, D = 2, 4, 6, 3
    q, k, v = torch.randn(B, K, D, generator=g), torch.randn(B, N, D, generator=g), torch.randn(B, N, D, generator=g)
    slot_mask = torch.tensor([[True, True, False, True], [False, True, True, True]])
    input_mask = torch.tensor([[True] * 5 + [False], [True] * 6])
    upd, attn = slot_attention_reference(q, k, v, eps=1e-2, slot_mask=slot_mask, input_mask=input_mask)
    sums = attn.sum(dim=1)  # (B, N)
    torch.testing.assert_close(sums, input_mask.float())
    assert torch.all(attn[~slot_mask] == 0)
    for b in range(B):
        for s in range(K):
            if not slot_mask[b, s]:
                assert torch.all(upd[b, s] == 0)
                continue
            w = (attn[b, s] + 1e-2) * input_mask[b]
            torch.testing.assert_close(upd[b, s], (w[:, None] * v[b]).sum(0) / w.sum())


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("dtype,matmul_precision,tol", PRECISION_CASES, ids=precision_case_id)
def test_tf32_dots_stay_within_gpu_tolerance(dtype, matmul_precision, tol, monkeypatch):
    """With every tf32 dot rounding its operands as tensor cores do (tf32_dots; the interpreter alone is exact),
    the kernel at VideoSAUR's size (7 slots x 196 patches, D = 64) and realistic magnitudes (unit-variance q, k, v:
    logits of std 1) stays within the tolerance the GPU parity tests use, against the fp64 reference on the same
    values. fp32 inputs under the default "highest" precision use exact dots, so emulating tf32 changes nothing
    there; every tf32 case does change, or the emulation would be testing nothing."""
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: matmul_precision)
    B, K, N, Dk, Dv = 2, 7, 196, 64, 64
    q, k, v = _inputs(B, K, N, Dk, Dv, dtype, seed=21)
    g = seeded(22)
    dout, dattn = randn((B, K, Dv), g), randn((B, K, N), g)
    want = _run(slot_attention_reference, q.double(), k.double(), v.double(), dout.double(), dattn.double())
    with tf32_dots():
        got = _run(_triton, q, k, v, dout, dattn)
    _compare(got, want, tol, f"{dtype_id(dtype)} {matmul_precision}")
    if INTERPRETED:
        exact = _run(_triton, q, k, v, dout, dattn)
        changed = any(not torch.equal(got[n], exact[n]) for n in got)
        assert changed == (dtype != torch.float32 or matmul_precision != "highest"), "tf32 emulation mismatch"


def test_launch_grid_fits_cuda_limits_for_huge_batches():
    """70000 rows (B*T frames, or CEM candidates) exceed CUDA's 65535 limit on grid y/z: rows go on x (limit
    2^31 - 1), the few N splits on y."""
    from cjepa_kernels.slot_attention import launch_grid

    grid = launch_grid(70000, 3)
    assert grid == (70000, 3) and grid[0] <= 2**31 - 1 and grid[1] <= 65535
