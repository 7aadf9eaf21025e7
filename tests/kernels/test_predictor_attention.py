"""Parity of the predictor attention kernel (kernels/predictor_attention.py) with its torch reference.

Reference: cjepa.backends.references.attention_reference. Output and dq/dk/dv are compared over the predictor's real
sequence lengths and head dims and over odd ones, with and without a key mask, in fp32/bf16/fp16.
"""

from __future__ import annotations

import pytest
import torch

from cjepa.backends.attention import BackendUnavailable, attention, check_backend
from cjepa.backends.references import attention_reference
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
    tf32_round,
)

# (B, H, L, E). L = T*S tokens: 112 = CLEVRER (16 frames x 7 slots), 24 / 40 = Push-T sizes; E = 8 (slot_dim 128
# over 16 heads), 16, 64. CPU keeps B*H tiny; odd L/E everywhere (37, 123, 24), and L = E = 1.
SHAPES = shapes(
    cpu=[(2, 2, 37, 8), (1, 2, 112, 8), (2, 1, 24, 16), (1, 2, 40, 64), (2, 1, 13, 24), (1, 1, 1, 1)],
    gpu=[(256, 16, 112, 8), (64, 16, 112, 64), (128, 16, 40, 16), (5, 3, 123, 24), (8, 4, 300, 64)],
)


def _key_mask(mode: str, B: int, L: int, gen: torch.Generator):
    if mode == "none":
        return None
    if mode == "all_on":
        return torch.ones(B, L, dtype=torch.bool, device=DEVICE)
    mask = torch.rand(B, L, generator=gen) < 0.7
    mask[:, 0] = True  # every row keeps one key: the reference is NaN on rows without keys (tested separately)
    return mask.to(DEVICE)


def _qkv(B, H, L, E, dtype, seed=0, packed=False):
    g = seeded(seed)
    if packed:  # the predictor's layout: one (B, L, 3, H, E) projection, viewed as three (B, H, L, E) tensors
        qkv = randn((B, L, 3, H, E), g, dtype).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]
    return randn((B, H, L, E), g, dtype), randn((B, H, L, E), g, dtype), randn((B, H, L, E), g, dtype)


def _run(fn, q, k, v, key_mask, dout, **kw):
    q, k, v = leaves(q, k, v)
    out = fn(q, k, v, key_mask, **kw)
    (out.float() * dout).sum().backward()
    return {"out": out, "dq": q.grad, "dk": k.grad, "dv": v.grad}


def _reference(q, k, v, key_mask):
    return attention_reference(q, k, v, key_mask)[0]


def _triton(q, k, v, key_mask, **kw):
    from cjepa_kernels.predictor_attention import predictor_attention

    return predictor_attention(q, k, v, key_mask, **kw)


def _oracle(q, k, v, key_mask, dout):
    """The reference in fp32 on the same (possibly bf16-valued) inputs. The bf16 reference rounds its scores and
    weights to bf16 before the softmax / the second matmul; the kernel keeps them in fp32, so the fair oracle for
    half inputs is the fp32 computation, compared at the half dtype's tolerance."""
    return _run(_reference, q.float(), k.float(), v.float(), key_mask, dout)


def _compare(got, want, dtype, where):
    """dtype: a TOLERANCES key, or an (atol, rtol) pair."""
    atol, rtol = TOLERANCES[dtype] if isinstance(dtype, torch.dtype) else dtype
    for name in want:
        assert_close_verbose(got[name], want[name], atol, rtol, name=f"{name} [{where}]")


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("mask_mode", ["none", "all_on", "partial"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_parity_fp32(shape, mask_mode):
    """fp32 output and dq/dk/dv match the reference for every shape and key-mask pattern."""
    B, H, L, E = shape
    q, k, v = _qkv(*shape, torch.float32)
    key_mask = _key_mask(mask_mode, B, L, seeded(1))
    dout = randn(shape, seeded(2))
    want = _run(_reference, q, k, v, key_mask, dout)
    got = _run(_triton, q, k, v, key_mask, dout)
    _compare(got, want, torch.float32, f"{shape} mask={mask_mode}")


DTYPE_SHAPES = [(2, 2, 37, 8), (1, 2, 24, 64)] + ([(256, 16, 112, 8), (64, 16, 112, 64)] if ON_GPU else [])


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=dtype_id)
@pytest.mark.parametrize("shape", DTYPE_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_parity_half(shape, dtype):
    """bf16/fp16 inputs: results come back in the input dtype and match the fp32 computation to that dtype's
    rounding."""
    B, H, L, E = shape
    q, k, v = _qkv(*shape, dtype, seed=3)
    key_mask = _key_mask("partial", B, L, seeded(4))
    dout = randn(shape, seeded(5))
    want = _oracle(q, k, v, key_mask, dout)
    got = _run(_triton, q, k, v, key_mask, dout)
    for name, t in got.items():
        assert t.dtype == dtype, f"{name} came back as {t.dtype}, expected {dtype}"
    _compare(got, want, dtype, f"{shape} {dtype_id(dtype)}")


@pytest.mark.interp
@requires_triton_runtime
def test_packed_qkv_views_and_head_merge_layout():
    """q, k, v as strided views of a packed (B, L, 3, H, E) projection give the reference's results, and the
    output is stored (B, L, H, E), so the predictor's head merge (transpose + reshape) is a free view."""
    B, H, L, E = 2, 3, 19, 16
    q, k, v = _qkv(B, H, L, E, torch.float32, seed=6, packed=True)
    assert not q.is_contiguous()
    dout = randn((B, H, L, E), seeded(7))
    want = _run(_reference, q, k, v, None, dout)
    got = _run(_triton, q, k, v, None, dout)
    _compare(got, want, torch.float32, "packed")
    assert got["out"].transpose(1, 2).is_contiguous()


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("blocks", [(16, 16, 16), (16, 32, 32)], ids=lambda b: "m{}-n{}-bwd{}".format(*b))
def test_multi_block_paths(blocks):
    """Small tiles force several key blocks per row (the online softmax's rescaling) and several blocks in the
    backward's two loops; results are unchanged."""
    from cjepa_kernels.predictor_attention import AttentionLaunch

    B, H, L, E = 1, 2, 45, 8
    q, k, v = _qkv(B, H, L, E, torch.float32, seed=8)
    key_mask = _key_mask("partial", B, L, seeded(9))
    dout = randn((B, H, L, E), seeded(10))
    launch = AttentionLaunch(block_m=blocks[0], block_n=blocks[1], warps_fwd=4, block_bwd=blocks[2], warps_bwd=4)
    want = _run(_reference, q, k, v, key_mask, dout)
    got = _run(_triton, q, k, v, key_mask, dout, launch=launch)
    _compare(got, want, torch.float32, f"blocks={blocks}")


@pytest.mark.interp
@requires_triton_runtime
def test_rows_without_keys_give_zeros_not_nan():
    """A batch element whose keys are all masked gets a zero output and zero, finite gradients (the reference is
    NaN there); the other elements still match the reference."""
    B, H, L, E = 2, 2, 11, 8
    q, k, v = _qkv(B, H, L, E, torch.float32, seed=11)
    key_mask = torch.ones(B, L, dtype=torch.bool, device=DEVICE)
    key_mask[0] = False
    dout = randn((B, H, L, E), seeded(12))
    got = _run(_triton, q, k, v, key_mask, dout)
    for name, t in got.items():
        assert torch.isfinite(t).all(), f"non-finite {name}"
        assert torch.count_nonzero(t[0]) == 0, f"{name} of the keyless element should be zero"
    want = _run(_reference, q[1:], k[1:], v[1:], key_mask[1:], dout[1:])
    _compare({n: t[1:] for n, t in got.items()}, want, torch.float32, "element with keys")


@pytest.mark.interp
@requires_triton_runtime
def test_bad_inputs_raise_clear_errors():
    """Mismatched shapes, mixed dtypes and malformed key masks are rejected with the offending shapes."""
    from cjepa_kernels.predictor_attention import predictor_attention

    q, k, v = _qkv(2, 2, 5, 8, torch.float32)
    with pytest.raises(ValueError, match="one shape"):
        predictor_attention(q, k[:, :, :4], v)
    with pytest.raises(ValueError, match="empty input"):
        predictor_attention(q[:0], k[:0], v[:0])
    with pytest.raises(TypeError, match="one dtype"):
        predictor_attention(q, k.half(), v)
    with pytest.raises(ValueError, match="key_mask must be a bool tensor of shape \\(2, 5\\)"):
        predictor_attention(q, k, v, torch.ones(2, 5, device=DEVICE))


@pytest.mark.interp
@requires_triton_runtime
def test_dispatcher_routes_to_the_kernel():
    """attention(..., backend="triton") returns the kernel's output; a non-zero dropout is refused clearly."""
    q, k, v = _qkv(2, 2, 9, 8, torch.float32, seed=13)
    key_mask = _key_mask("partial", 2, 9, seeded(14))
    got = attention(q, k, v, backend="triton", key_mask=key_mask)
    want = attention(q, k, v, backend="torch", key_mask=key_mask)
    assert_close_verbose(got, want, *TOLERANCES[torch.float32], name="out")
    with pytest.raises(BackendUnavailable, match="no attention-weight dropout"):
        attention(q, k, v, backend="triton", dropout_p=0.1)


def test_backend_errors_are_clear(monkeypatch):
    """Unknown backends, triton without a GPU or interpreter, and flash_attn where it cannot run are refused with
    the config key and the reason."""
    with pytest.raises(BackendUnavailable, match="unknown attention backend 'xformers'"):
        check_backend("xformers")
    with pytest.raises(BackendUnavailable, match="kernels.attention=flash_attn needs a CUDA device"):
        check_backend("flash_attn", "cpu")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailable, match="kernels.attention=triton needs a CUDA device"):
        check_backend("triton", "cpu")


def test_reference_gradcheck_fp64():
    """The reference's gradients (the oracle of the kernel tests) are right: gradcheck in fp64 with a key mask."""
    g = seeded(15)
    B, H, L, E = 2, 1, 4, 3
    q, k, v = (torch.randn((B, H, L, E), generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    key_mask = torch.tensor([[True, False, True, True], [True, True, False, False]])
    assert torch.autograd.gradcheck(lambda q, k, v: attention_reference(q, k, v, key_mask)[0], (q, k, v))


def test_tf32_round_helper():
    """tf32_round keeps 10 mantissa bits, rounding to nearest with ties to even: 1 + 2^-11 (half an ulp) goes down
    to 1, 1 + 3 * 2^-11 up to 1 + 2^-9; signs, infinities and exact tf32 values are kept; error <= 2^-11 relative."""
    x = torch.tensor([1 + 2**-11, 1 + 3 * 2**-11, -(1 + 3 * 2**-11), 1 + 2**-10, float("inf"), 3.0])
    want = torch.tensor([1.0, 1 + 2**-9, -(1 + 2**-9), 1 + 2**-10, float("inf"), 3.0])
    assert torch.equal(tf32_round(x), want)
    y = torch.randn(10_000, generator=seeded(20)) * 100
    assert float(((tf32_round(y) - y).abs() / y.abs()).max()) <= 2**-11


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("dtype,matmul_precision,tol", PRECISION_CASES, ids=precision_case_id)
@pytest.mark.parametrize("shape", [(1, 2, 112, 64), (2, 2, 112, 8)], ids=lambda s: "x".join(map(str, s)))
def test_tf32_dots_stay_within_gpu_tolerance(shape, dtype, matmul_precision, tol, monkeypatch):
    """With every tf32 dot rounding its operands as tensor cores do (tf32_dots; the interpreter alone is exact),
    the kernel at the CLEVRER sequence length and realistic magnitudes (unit-variance q, k, v: softmax logits of
    std 1) stays within the tolerance the GPU parity tests use, against the fp64 reference on the same values. fp32
    inputs under the default "highest" precision use exact dots, so emulating tf32 changes nothing there; every
    tf32 case does change, or the emulation would be testing nothing."""
    from cjepa_kernels.predictor_attention import predictor_attention

    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: matmul_precision)
    q, k, v = _qkv(*shape, dtype, seed=21)
    dout = randn(shape, seeded(22))
    want = _run(_reference, q.double(), k.double(), v.double(), None, dout.double())
    with tf32_dots():
        got = _run(predictor_attention, q, k, v, None, dout)
    _compare(got, want, tol, f"{shape} {dtype_id(dtype)} {matmul_precision}")
    if INTERPRETED:
        exact = _run(predictor_attention, q, k, v, None, dout)
        changed = any(not torch.equal(got[n], exact[n]) for n in got)
        assert changed == (dtype != torch.float32 or matmul_precision != "highest"), "tf32 emulation mismatch"


def _fake_flash_attn(calls: list):
    """A stand-in flash_attn module with the real package's dtype contract: flash_attn_func takes (B, L, H, E)
    fp16/bf16 tensors and raises on anything else (the real one raises "FlashAttention only support fp16 and bf16
    data type"); it computes plain softmax attention, so results can be checked."""
    import types

    def flash_attn_func(q, k, v, dropout_p=0.0):
        if any(t.dtype not in (torch.float16, torch.bfloat16) for t in (q, k, v)):
            raise RuntimeError("FlashAttention only support fp16 and bf16 data type")
        calls.append(q.dtype)
        out = attention_reference(*(t.transpose(1, 2) for t in (q, k, v)))[0]
        return out.transpose(1, 2)

    return types.SimpleNamespace(flash_attn_func=flash_attn_func)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
def test_flash_attn_backend_takes_fp32_inputs(dtype, monkeypatch):
    """kernels.attention=flash_attn with fp32 inputs (validation, rollout, train.precision=fp32) hands flash-attn
    bf16 tensors and returns the input dtype, close to the reference at bf16 precision; bf16 inputs pass as they
    are. Runs without flash-attn installed: a fake module simulates the real package's fp16/bf16-only contract."""
    import sys

    calls: list = []
    monkeypatch.setitem(sys.modules, "flash_attn", _fake_flash_attn(calls))
    q, k, v = (t.cpu() for t in _qkv(2, 2, 9, 8, dtype, seed=16))
    got = attention(q, k, v, backend="flash_attn")
    assert got.dtype == dtype and calls == [torch.bfloat16]
    want = attention_reference(q.float(), k.float(), v.float())[0]
    assert_close_verbose(got, want, *TOLERANCES[torch.bfloat16], name="flash_attn out")


CUDA_GRID_LIMITS = (2**31 - 1, 65535, 65535)  # x, y, z


def test_launch_grids_fit_cuda_limits_for_huge_batches():
    """B*H = 70000 sequences (CEM scoring thousands of candidates) exceed CUDA's 65535 limit on grid y/z: the
    forward and backward grids put B*H on x (limit 2^31 - 1), computed without launching anything."""
    from cjepa_kernels.predictor_attention import bwd_grid, choose_launch, fwd_grid

    B, H, L, E = 4375, 16, 112, 8
    launch = choose_launch(L, E)
    for name, grid in (("forward", fwd_grid(B, H, L, launch)), ("backward", bwd_grid(B, H, L, launch))):
        assert all(n <= limit for n,
                   limit in zip(grid, CUDA_GRID_LIMITS)), f"{name} grid {grid} exceeds {CUDA_GRID_LIMITS}"
        assert grid[0] * grid[1] == B * H * -(-L // (launch.block_m if name == "forward" else launch.block_bwd))
