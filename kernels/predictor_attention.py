"""Attention for the C-JEPA predictor's short sequences (forward and backward) in Triton.

Reference: ``cjepa.backends.references.attention_reference`` (softmax(q k^T / sqrt(E)) v with an optional key mask),
reached through ``cjepa.backends.attention.attention(..., backend="triton")``.

What is special here. The predictor attends over T x S tokens of one clip: 16 x 7 = 112 for CLEVRER, 24-40 for
Push-T, i.e. L <= ~128, bidirectional, with head dims 8 (slot_dim 128 over 16 heads, the original's layout), 16
or 64. FlashAttention-style kernels are tuned for thousands of tokens; here there are thousands of tiny
sequences (B x H = 256 x 16 = 4096 per layer) and the cost is launches, the (B, H, L, L) score tensors the
reference writes to memory (205 MB in fp32 at the CLEVRER size), and poor occupancy of kernels that assume long
rows. This kernel keeps scores in registers, handles one (batch, head, block of BLOCK rows) per program, and
needs exactly one launch forward and one backward:

* forward: grid (B*H, ceil(L / BLOCK_M)). A program loads its queries once and walks over the keys in blocks of
  BLOCK_N with the online softmax (one or two steps at these lengths). It writes the output and the row
  log-sum-exp (fp32, (B, H, L)) for the backward.
* backward: grid (B*H, ceil(L / BLOCK)). Program j computes dK, dV of key block j (looping over query blocks)
  and then dQ of query block j (looping over key blocks), recomputing the probabilities from the saved
  log-sum-exp both times: no atomics, deterministic, no extra preprocessing launch (the FA2 ``delta`` term,
  rowsum(dO * O), is recomputed per query block: the tiles are tiny and L2-resident).

Layout. Inputs are read through their strides, so the views of a packed qkv projection
((B, L, 3, H, E) permuted to (B, H, L, E)) need no copy. The output and gradients are allocated as (B, L, H, E)
and returned as (B, H, L, E) views, which is the layout the predictor's head merge reads without a copy.

Numerics: tiles are upcast to fp32 after loading; all accumulation is fp32; softmax in base 2 with
``log2(e) / sqrt(E)`` folded into q. The precision of every ``tl.dot`` is chosen by :func:`_precision`:

* fp32 inputs: exact fp32 dots (``input_precision="ieee"``) under torch's default fp32 matmul precision
  ("highest"), so the kernel agrees with the fp32 reference to summation order; tf32 once the user allowed tf32
  for fp32 matmuls (``torch.set_float32_matmul_precision("high")``), as torch's own matmuls then do.
* bf16/fp16 inputs: tf32 tensor cores. The loaded bf16/fp16 values are exact in tf32; the fp32 intermediates that
  feed the second dots (softmax weights P, score gradients dS, the scaled q) are rounded to tf32 (2^-11 relative),
  where bf16 operands would round them to 2^-9 and lose what the fp32 softmax kept. These tiny tiles are bound by
  memory and latency, not by tensor-core throughput, so tf32's half rate next to bf16 costs nothing measurable.

The tf32 error is tested, not assumed: ``tests/kernels`` runs the kernel in the interpreter with every tf32 dot's
operands rounded to tf32 (the interpreter is otherwise exact) and checks it against the fp64 reference at the
tolerances the GPU parity tests use. The reference, in bf16, rounds its scores and weights to bf16; this kernel
does not, so it is closer to the fp32 result than the bf16 reference is.
Tile dims are >= 16 (the smallest ``tl.dot`` tile on NVIDIA GPUs): head dim 8 is zero-padded to 16.

Key mask: a query row whose keys are all masked gets a zero output and zero gradients (the reference returns
NaN there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import triton
import triton.language as tl

from cjepa.backends.references import attention_reference

REFERENCE = attention_reference
LOG2E = 1.4426950408889634
_MIN_DOT = 16


# --------------------------------------------------------------------------------------------- kernels


@triton.jit
def _key_valid(mask_ptr, b, offs_n, L, s_mb, s_ml, HAS_MASK: tl.constexpr):
    valid = offs_n < L
    if HAS_MASK:
        valid = valid & (tl.load(mask_ptr + b * s_mb + offs_n * s_ml, mask=offs_n < L, other=0) != 0)
    return valid


@triton.jit
def _load_rows(ptr, base, offs_l, offs_e, L, E, s_l, s_e):
    """(len(offs_l), len(offs_e)) fp32 tile of one (batch, head): zero outside [0, L) x [0, E)."""
    tile = tl.load(ptr + base + offs_l[:, None] * s_l + offs_e[None, :] * s_e,
                   mask=(offs_l[:, None] < L) & (offs_e[None, :] < E), other=0.0)
    return tile.to(tl.float32)


@triton.jit
def _predictor_attention_fwd_kernel(
    q_ptr, k_ptr, v_ptr, mask_ptr, o_ptr, lse_ptr,
    H, L, E, qk_scale_log2,
    s_qb, s_qh, s_ql, s_qe, s_kb, s_kh, s_kl, s_ke, s_vb, s_vh, s_vl, s_ve, s_ob, s_oh, s_ol, s_oe, s_mb, s_ml,
    HAS_MASK: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_E: tl.constexpr,
    PRECISION: tl.constexpr,
):
    bh = tl.program_id(0)  # (batch, head) on grid axis 0: see fwd_grid
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, BLOCK_E)

    q = _load_rows(q_ptr, b * s_qb + h * s_qh, offs_m, offs_e, L, E, s_ql, s_qe) * qk_scale_log2  # (BLOCK_M, BLOCK_E)
    m_i = tl.full((BLOCK_M,), float("-inf"), dtype=tl.float32)  # running row max (log2 units)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)  # running row sum of exp2
    acc = tl.zeros((BLOCK_M, BLOCK_E), dtype=tl.float32)
    for n0 in range(0, L, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        valid = _key_valid(mask_ptr, b, offs_n, L, s_mb, s_ml, HAS_MASK)
        kt = _load_rows(k_ptr, b * s_kb + h * s_kh, offs_n, offs_e, L, E, s_kl, s_ke)
        vt = _load_rows(v_ptr, b * s_vb + h * s_vh, offs_n, offs_e, L, E, s_vl, s_ve)
        s = tl.dot(q, tl.trans(kt), input_precision=PRECISION)  # (BLOCK_M, BLOCK_N)
        s = tl.where(valid[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        # Rows with no valid key so far: subtract 0 instead of -inf (exp2(-inf - 0) = 0, never NaN).
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = tl.dot(p, vt, acc * alpha[:, None], input_precision=PRECISION)
        m_i = m_new

    has_keys = l_i > 0
    out = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    row_ok = offs_m < L
    tl.store(o_ptr + b * s_ob + h * s_oh + offs_m[:, None] * s_ol + offs_e[None, :] * s_oe,
             out.to(o_ptr.dtype.element_ty), mask=row_ok[:, None] & (offs_e[None, :] < E))
    # +inf for rows without keys makes exp2(s - lse) = 0 in the backward.
    lse = tl.where(has_keys, m_i + tl.log2(tl.where(has_keys, l_i, 1.0)), float("inf"))
    tl.store(lse_ptr + bh.to(tl.int64) * L + offs_m, lse, mask=row_ok)


@triton.jit
def _probs_and_dscores(q, kt, vt, do, lse, delta, rows_ok, valid, qk_scale_log2, PRECISION: tl.constexpr):
    """Recompute P = softmax rows (BLOCK_M, BLOCK_N) and dS = P * (dO V^T - delta) for one tile pair."""
    s = tl.dot(q * qk_scale_log2, tl.trans(kt), input_precision=PRECISION)
    p = tl.where(rows_ok[:, None] & valid[None, :], tl.exp2(s - lse[:, None]), 0.0)
    dp = tl.dot(do, tl.trans(vt), input_precision=PRECISION)
    return p, p * (dp - delta[:, None])


@triton.jit
def _predictor_attention_bwd_kernel(
    q_ptr, k_ptr, v_ptr, mask_ptr, o_ptr, lse_ptr, do_ptr, dq_ptr, dk_ptr, dv_ptr,
    H, L, E, qk_scale_log2, scale,
    s_qb, s_qh, s_ql, s_qe, s_kb, s_kh, s_kl, s_ke, s_vb, s_vh, s_vl, s_ve, s_ob, s_oh, s_ol, s_oe,
    s_gb, s_gh, s_gl, s_ge, s_db, s_dh, s_dl, s_de, s_mb, s_ml,
    HAS_MASK: tl.constexpr, BLOCK: tl.constexpr, BLOCK_E: tl.constexpr, PRECISION: tl.constexpr,
):
    bh = tl.program_id(0)  # (batch, head) on grid axis 0: see bwd_grid
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)  # this program's key block, then query block
    offs_e = tl.arange(0, BLOCK_E)
    q_base, k_base, v_base = b * s_qb + h * s_qh, b * s_kb + h * s_kh, b * s_vb + h * s_vh
    o_base, g_base = b * s_ob + h * s_oh, b * s_gb + h * s_gh
    lse_base = bh.to(tl.int64) * L
    e_ok = offs_e[None, :] < E

    # ---- dK, dV of key block j: loop over all query blocks
    valid = _key_valid(mask_ptr, b, offs_j, L, s_mb, s_ml, HAS_MASK)
    kt = _load_rows(k_ptr, k_base, offs_j, offs_e, L, E, s_kl, s_ke)  # (BLOCK, BLOCK_E)
    vt = _load_rows(v_ptr, v_base, offs_j, offs_e, L, E, s_vl, s_ve)
    dk = tl.zeros((BLOCK, BLOCK_E), dtype=tl.float32)
    dv = tl.zeros((BLOCK, BLOCK_E), dtype=tl.float32)
    for m0 in range(0, L, BLOCK):
        offs_m = m0 + tl.arange(0, BLOCK)
        rows_ok = offs_m < L
        q = _load_rows(q_ptr, q_base, offs_m, offs_e, L, E, s_ql, s_qe)
        do = _load_rows(do_ptr, g_base, offs_m, offs_e, L, E, s_gl, s_ge)
        o = _load_rows(o_ptr, o_base, offs_m, offs_e, L, E, s_ol, s_oe)
        lse = tl.load(lse_ptr + lse_base + offs_m, mask=rows_ok, other=float("inf"))
        delta = tl.sum(do * o, axis=1)  # rowsum(dO * O) = sum_n P dP: the softmax backward's subtracted term
        p, ds = _probs_and_dscores(q, kt, vt, do, lse, delta, rows_ok, valid, qk_scale_log2, PRECISION)
        dv = tl.dot(tl.trans(p), do, dv, input_precision=PRECISION)
        dk = tl.dot(tl.trans(ds), q, dk, input_precision=PRECISION)
    j_ok = (offs_j[:, None] < L) & e_ok
    d_off = b * s_db + h * s_dh + offs_j[:, None] * s_dl + offs_e[None, :] * s_de  # dq, dk, dv share one layout
    tl.store(dk_ptr + d_off, (dk * scale).to(dk_ptr.dtype.element_ty), mask=j_ok)
    tl.store(dv_ptr + d_off, dv.to(dv_ptr.dtype.element_ty), mask=j_ok)

    # ---- dQ of query block j: loop over all key blocks
    rows_ok = offs_j < L
    q = _load_rows(q_ptr, q_base, offs_j, offs_e, L, E, s_ql, s_qe)
    do = _load_rows(do_ptr, g_base, offs_j, offs_e, L, E, s_gl, s_ge)
    o = _load_rows(o_ptr, o_base, offs_j, offs_e, L, E, s_ol, s_oe)
    lse = tl.load(lse_ptr + lse_base + offs_j, mask=rows_ok, other=float("inf"))
    delta = tl.sum(do * o, axis=1)
    dq = tl.zeros((BLOCK, BLOCK_E), dtype=tl.float32)
    for n0 in range(0, L, BLOCK):
        offs_n = n0 + tl.arange(0, BLOCK)
        valid = _key_valid(mask_ptr, b, offs_n, L, s_mb, s_ml, HAS_MASK)
        kt = _load_rows(k_ptr, k_base, offs_n, offs_e, L, E, s_kl, s_ke)
        vt = _load_rows(v_ptr, v_base, offs_n, offs_e, L, E, s_vl, s_ve)
        p, ds = _probs_and_dscores(q, kt, vt, do, lse, delta, rows_ok, valid, qk_scale_log2, PRECISION)
        dq = tl.dot(ds, kt, dq, input_precision=PRECISION)
    tl.store(dq_ptr + d_off, (dq * scale).to(dq_ptr.dtype.element_ty), mask=j_ok)


# --------------------------------------------------------------------------------------------- launch choice


@dataclass(frozen=True)
class AttentionLaunch:
    """Tile sizes and warps of one call (see :func:`choose_launch`)."""

    block_m: int  # forward: query rows per program
    block_n: int  # forward: keys per inner step
    warps_fwd: int
    block_bwd: int  # backward: key block (dK, dV) and query block (dQ) per program
    warps_bwd: int
    num_stages: int = 2


# (head dim <= 16?, fp32 inputs?) -> (block_m, block_n, warps_fwd, block_bwd, warps_bwd). Chosen from ptxas register
# counts of the kernels compiled ahead of time for sm_90 (Triton 3.9; the defaults also compile without spills under
# 3.6, the GPU machines' version) at L = 112: among configurations without spills, the one with the most resident
# warps per SM. E.g. fp32, head dim 64: a 32-row forward needs 106
# registers at 8 warps but spills 388 bytes at 4; the backward spills at every block size except 16 rows x 8 warps.
# Not yet confirmed by GPU timings: bench_predictor_attention.py --sweep times the alternatives.
_TILES = {
    (True, False): (64, 64, 4, 32, 4),
    (True, True): (32, 64, 4, 32, 8),
    (False, False): (16, 64, 8, 16, 4),
    (False, True): (32, 64, 8, 16, 8),
}


def choose_launch(L: int, E: int, fp32: bool = False) -> AttentionLaunch:
    """Tiles from ``_TILES`` clamped to the sequence length. With L = 112 the forward takes two 64-key steps of the
    online softmax, and B*H*ceil(L/BLOCK) programs (thousands at the CLEVRER size) fill the GPU."""
    block_e = max(_MIN_DOT, triton.next_power_of_2(E))
    block_m, block_n, warps_fwd, block_bwd, warps_bwd = _TILES[(block_e <= 16, fp32)]
    seq = max(_MIN_DOT, triton.next_power_of_2(L))
    return AttentionLaunch(block_m=min(block_m, seq), block_n=min(block_n, seq), warps_fwd=warps_fwd,
                           block_bwd=min(block_bwd, seq), warps_bwd=warps_bwd)


# --------------------------------------------------------------------------------------------- grids

# CUDA launch grids allow 2^31 - 1 programs along x but only 65535 along y and z. B*H is the axis that grows (a
# batch of 256 x 16 heads is 4096; CEM planning scores thousands of candidates at once, B*H > 65535), so it goes on
# x; the sequence blocks (ceil(L / BLOCK) <= a few) go on y.


def fwd_grid(B: int, H: int, L: int, launch: AttentionLaunch) -> tuple[int, int]:
    """(B*H, query blocks): the forward's launch grid."""
    return (B * H, triton.cdiv(L, launch.block_m))


def bwd_grid(B: int, H: int, L: int, launch: AttentionLaunch) -> tuple[int, int]:
    """(B*H, key/query blocks): the backward's launch grid."""
    return (B * H, triton.cdiv(L, launch.block_bwd))


# --------------------------------------------------------------------------------------------- host wrappers


def _check_inputs(q, k, v, key_mask) -> None:
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"predictor attention wants q, k, v of one shape (B, H, L, E); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if q.numel() == 0:
        raise ValueError(f"predictor attention got an empty input of shape {tuple(q.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise TypeError(f"predictor attention kernel takes fp32/bf16/fp16 q, k, v of one dtype; got {q.dtype}, "
                        f"{k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v on different devices: {q.device}, {k.device}, {v.device}")
    B, _, L, _ = q.shape
    if key_mask is not None and (key_mask.dtype != torch.bool or tuple(key_mask.shape) != (B, L)
                                 or key_mask.device != q.device):
        raise ValueError(f"key_mask must be a bool tensor of shape {(B, L)} on {q.device}; got {key_mask.dtype} "
                         f"{tuple(key_mask.shape)} on {key_mask.device}")


def _heads_last_layout(like: torch.Tensor) -> torch.Tensor:
    """An empty (B, H, L, E) tensor stored as (B, L, H, E): the predictor merges heads from that layout for free."""
    B, H, L, E = like.shape
    return torch.empty((B, L, H, E), device=like.device, dtype=like.dtype).permute(0, 2, 1, 3)


def _precision(dtype: torch.dtype) -> str:
    """``input_precision`` of every dot (see the module docstring): tf32 tensor cores for bf16/fp16 inputs (exact
    in tf32; fp32 intermediates rounded to 2^-11); for fp32, torch's fp32 matmul setting decides: exact fp32 by
    default ("highest"), tf32 once allowed (``torch.set_float32_matmul_precision("high")``)."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def _mask_arg(key_mask, dummy):
    if key_mask is None:
        return dummy, 0, 0
    m = key_mask.view(torch.uint8)
    return m, m.stride(0), m.stride(1)


def predictor_attention_fwd(q, k, v, key_mask, launch: AttentionLaunch):
    """Forward launch. Returns the output (B, H, L, E) in q's dtype and the fp32 row log2-sum-exp (B, H, L)."""
    B, H, L, E = q.shape
    out = _heads_last_layout(q)
    lse = torch.empty((B, H, L), device=q.device, dtype=torch.float32)
    mask, s_mb, s_ml = _mask_arg(key_mask, q)
    _predictor_attention_fwd_kernel[fwd_grid(B, H, L, launch)](
        q, k, v, mask, out, lse, H, L, E, LOG2E / E**0.5,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), s_mb, s_ml,
        HAS_MASK=key_mask is not None, BLOCK_M=launch.block_m, BLOCK_N=launch.block_n,
        BLOCK_E=max(_MIN_DOT, triton.next_power_of_2(E)), PRECISION=_precision(q.dtype),
        num_warps=launch.warps_fwd, num_stages=launch.num_stages,
    )
    return out, lse


def predictor_attention_bwd(q, k, v, key_mask, out, lse, dout, launch: AttentionLaunch):
    """Backward launch. Returns (dq, dk, dv), (B, H, L, E) views of (B, L, H, E) storage."""
    B, H, L, E = q.shape
    dq, dk, dv = _heads_last_layout(q), _heads_last_layout(k), _heads_last_layout(v)
    mask, s_mb, s_ml = _mask_arg(key_mask, q)
    _predictor_attention_bwd_kernel[bwd_grid(B, H, L, launch)](
        q, k, v, mask, out, lse, dout, dq, dk, dv, H, L, E, LOG2E / E**0.5, 1.0 / E**0.5,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *dout.stride(), *dq.stride(), s_mb, s_ml,
        HAS_MASK=key_mask is not None, BLOCK=launch.block_bwd, BLOCK_E=max(_MIN_DOT, triton.next_power_of_2(E)),
        PRECISION=_precision(q.dtype), num_warps=launch.warps_bwd, num_stages=launch.num_stages,
    )
    return dq, dk, dv


# --------------------------------------------------------------------------------------------- torch.library ops

# The launches are registered as torch.library custom ops (fake implementations give shapes, strides and dtypes;
# autograd is registered on the forward op), so torch.compile(fullgraph=True) traces a model through the kernel
# as one opaque op instead of breaking the graph at a Python autograd.Function. triton_op + wrap_triton would let
# inductor see into the kernel, but wrap_triton refuses the interpreter's kernels, so the CPU tests could not
# check that path; custom_op behaves the same natively and interpreted. A given tile choice travels as a list of
# ints (an op's arguments must be tensors or plain values); an empty list lets the op choose when it runs, since
# the choice reads torch's fp32 matmul precision, which dynamo cannot trace.


def _launch_args(launch: Optional[AttentionLaunch]) -> list[int]:
    if launch is None:
        return []
    return [launch.block_m, launch.block_n, launch.warps_fwd, launch.block_bwd, launch.warps_bwd, launch.num_stages]


def _launch_of(args: list[int], q: torch.Tensor) -> AttentionLaunch:
    if args:
        return AttentionLaunch(*args)
    return choose_launch(q.shape[2], q.shape[3], fp32=_precision(q.dtype) == "ieee")


@torch.library.custom_op("cjepa::predictor_attention_fwd", mutates_args=())
def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: Optional[torch.Tensor],
            launch: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return predictor_attention_fwd(q, k, v, key_mask, _launch_of(launch, q))


@_fwd_op.register_fake
def _(q, k, v, key_mask, launch):
    B, H, L, _ = q.shape
    return _heads_last_layout(q), q.new_empty((B, H, L), dtype=torch.float32)


@torch.library.custom_op("cjepa::predictor_attention_bwd", mutates_args=())
def _bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: Optional[torch.Tensor], out: torch.Tensor,
            lse: torch.Tensor, dout: torch.Tensor,
            launch: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return predictor_attention_bwd(q, k, v, key_mask, out, lse, dout, _launch_of(launch, q))


@_bwd_op.register_fake
def _(q, k, v, key_mask, out, lse, dout, launch):
    return _heads_last_layout(q), _heads_last_layout(k), _heads_last_layout(v)


def _setup_context(ctx, inputs, output):
    q, k, v, key_mask, launch = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, key_mask, out, lse)
    ctx.launch = launch
    ctx.mark_non_differentiable(lse)


def _backward(ctx, dout, _dlse):
    q, k, v, key_mask, out, lse = ctx.saved_tensors
    dq, dk, dv = _bwd_op(q, k, v, key_mask, out, lse, dout, ctx.launch)
    return dq, dk, dv, None, None


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def predictor_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: Optional[torch.Tensor] = None,
    *,
    launch: Optional[AttentionLaunch] = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(E)) v on (B, H, L, E); key_mask (B, L) bool, True = may be attended to."""
    _check_inputs(q, k, v, key_mask)
    return _fwd_op(q, k, v, key_mask, _launch_args(launch))[0]
