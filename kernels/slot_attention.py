"""Fused slot-attention update step (forward and backward) in Triton.

Reference: ``cjepa.backends.references.slot_attention_reference`` (the CPU path and the test oracle). Same
signature, same results: q (B, K, Dk), k (B, N, Dk), v (B, N, Dv) -> updates (B, K, Dv), attn (B, K, N), with
the optional ``slot_mask`` (B, K) and ``input_mask`` (B, N).

Why a kernel. The reference is two batched matmuls with a chain of ~8 elementwise/reduction kernels over the
(B, K, N) logits between them, each one a launch and a round trip to memory, and twice that in the backward.
With K = 4..11 slots the matmuls have a tiny M dimension, so they are memory-bound too: the whole op is a
streaming pass over k and v. The minimum traffic is one read of k and v in the forward and one read of k, v plus
one write of dk, dv in the backward; this kernel does exactly that and keeps everything else in registers.

Layout. K is tiny, so every program holds **all K slots** in registers (padded to 16 rows, the smallest tile
``tl.dot`` accepts on every GPU) and walks over the inputs in blocks of BLOCK_N:

* the softmax over slots is a per-column reduction over the K rows of a (K, BLOCK_N) tile: local, no pass over N;
* the renormalisation over inputs is a division by a per-slot sum over N. It commutes with the weighted sum, so
  the forward accumulates ``sum_n w v`` and ``sum_n w`` in one pass and divides at the end (no second pass);
* the backward needs that per-slot sum (saved by the forward) and ``c_k = dU_k . U_k`` (the derivative of the
  renormalisation, computed once per row from the saved fp32 updates), after which every input block is again
  local: dk and dv are written per block and dq is a per-slot sum over blocks.

Grid: one program per (batch row, split of N). With B·T in the thousands a single split per row already fills
the GPU and the program finalises in-kernel. When rows are few and N is large (SAVi's 64x64 = 4096 inputs at a
small batch), N is split over several programs that write fp32 partial sums (forward: ``sum w v``, ``sum w``;
backward: dq) to a workspace which the host adds up: deterministic, no atomics.

Numerics: every tile is upcast to fp32 after loading, all accumulation is fp32, the softmax runs in base 2 with
``scale * log2(e)`` folded into q. The precision of every ``tl.dot`` is chosen by :func:`_precision`: with an fp32
input, ``input_precision="ieee"`` (exact parity with the fp32 reference) under torch's default fp32 matmul precision
("highest"), tf32 once the user allowed it (``torch.set_float32_matmul_precision("high")``); with bf16/fp16 inputs,
tf32 tensor cores: bf16 and fp16 values are exact in tf32, and the fp32 intermediates that feed the dots (softmax
weights, logit gradients) are rounded to tf32 (2^-11 relative), below the bf16/fp16 output rounding, where bf16
operands would round them to 2^-9. The kernel is bound by memory traffic, so tf32's rate costs nothing measurable.
The tf32 error is tested, not assumed: ``tests/kernels`` runs the kernel in the interpreter with every tf32 dot's
operands rounded to tf32 and checks it against the fp64 reference at the GPU parity tests' tolerances.

Masks: an inactive slot takes no attention mass and gets a zero update; a row with no active slot gets zero
attention and zero updates (never NaN); a padded input takes no mass and contributes nothing to the mean.
Gradients are zero wherever the reference's are, and finite everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import triton
import triton.language as tl

from cjepa.backends.references import slot_attention_reference

REFERENCE = slot_attention_reference
LOG2E = 1.4426950408889634
_MIN_DOT = 16  # tl.dot needs every tile dimension >= 16 on NVIDIA GPUs


# --------------------------------------------------------------------------------------------- kernels


@triton.jit
def _slot_probs(q_log2, kt, active, any_active, PRECISION: tl.constexpr):
    """Softmax over slots of one input block: (BLOCK_K, BLOCK_N) probabilities, zero for inactive slots."""
    s = tl.dot(q_log2, tl.trans(kt), input_precision=PRECISION)  # (BLOCK_K, BLOCK_N), log2 units
    s = tl.where(active[:, None], s, float("-inf"))
    col_max = tl.max(s, axis=0)  # (BLOCK_N,)
    # No active slot: every logit is -inf; subtract 0 instead of -inf so exp2 gives 0, not NaN.
    col_max = tl.where(any_active, col_max, 0.0)
    p = tl.exp2(s - col_max[None, :])
    col_sum = tl.sum(p, axis=0)
    col_sum = tl.where(col_sum > 0, col_sum, 1.0)
    return p / col_sum[None, :]


@triton.jit
def _slot_attention_fwd_kernel(
    q_ptr, k_ptr, v_ptr, slot_mask_ptr, input_mask_ptr,
    out_ptr, u32_ptr, den_ptr, attn_ptr, ws_acc_ptr, ws_den_ptr,
    K, N, DK, DV, n_per_split, qk_scale_log2, eps,
    s_qb, s_qk, s_qd, s_kb, s_kn, s_kd, s_vb, s_vn, s_vd, s_smb, s_smk, s_imb, s_imn,
    s_ob, s_ok, s_od, s_ab, s_ak, s_an,
    HAS_SLOT_MASK: tl.constexpr, HAS_INPUT_MASK: tl.constexpr, FINALIZE: tl.constexpr, STORE_U32: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    PRECISION: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)  # int64: B*N*D exceeds 2^31 at SAVi sizes
    split = tl.program_id(1)
    n_begin = split * n_per_split
    n_end = tl.minimum(n_begin + n_per_split, N)

    offs_k = tl.arange(0, BLOCK_K)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    active = offs_k < K
    if HAS_SLOT_MASK:
        active = active & (tl.load(slot_mask_ptr + row * s_smb + offs_k * s_smk, mask=offs_k < K, other=0) != 0)
    any_active = tl.sum(active.to(tl.int32), axis=0) > 0

    q = tl.load(q_ptr + row * s_qb + offs_k[:, None] * s_qk + offs_dk[None, :] * s_qd,
                mask=(offs_k[:, None] < K) & (offs_dk[None, :] < DK), other=0.0).to(tl.float32)
    q_log2 = q * qk_scale_log2  # (BLOCK_K, BLOCK_DK): scale and log2(e) folded in once

    acc = tl.zeros((BLOCK_K, BLOCK_DV), dtype=tl.float32)  # sum_n w[k, n] v[n, :]
    den = tl.zeros((BLOCK_K,), dtype=tl.float32)  # sum_n w[k, n]
    for n0 in range(n_begin, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_range = offs_n < n_end
        kt = tl.load(k_ptr + row * s_kb + offs_n[:, None] * s_kn + offs_dk[None, :] * s_kd,
                     mask=in_range[:, None] & (offs_dk[None, :] < DK), other=0.0).to(tl.float32)
        probs = _slot_probs(q_log2, kt, active, any_active, PRECISION)  # (BLOCK_K, BLOCK_N)
        real = in_range
        if HAS_INPUT_MASK:
            real = real & (tl.load(input_mask_ptr + row * s_imb + offs_n * s_imn, mask=in_range, other=0) != 0)
        attn = tl.where(real[None, :], probs, 0.0)
        tl.store(attn_ptr + row * s_ab + offs_k[:, None] * s_ak + offs_n[None, :] * s_an,
                 attn.to(attn_ptr.dtype.element_ty), mask=(offs_k[:, None] < K) & in_range[None, :])
        w = tl.where(active[:, None] & real[None, :], probs + eps, 0.0)
        den += tl.sum(w, axis=1)
        vt = tl.load(v_ptr + row * s_vb + offs_n[:, None] * s_vn + offs_dv[None, :] * s_vd,
                     mask=in_range[:, None] & (offs_dv[None, :] < DV), other=0.0).to(tl.float32)
        acc = tl.dot(w, vt, acc, input_precision=PRECISION)

    kd_mask = (offs_k[:, None] < K) & (offs_dv[None, :] < DV)
    if FINALIZE:
        # A slot with no mass (inactive, or every input padded) has den == 0 and acc == 0: dividing by 1 gives the
        # zero update without a 0/0 (the reference does the same).
        den_safe = tl.where(den > 0, den, 1.0)
        upd = acc / den_safe[:, None]
        tl.store(out_ptr + row * s_ob + offs_k[:, None] * s_ok + offs_dv[None, :] * s_od,
                 upd.to(out_ptr.dtype.element_ty), mask=kd_mask)
        if STORE_U32:  # fp32 copy for the backward when the output is bf16/fp16
            tl.store(u32_ptr + row * K * DV + offs_k[:, None] * DV + offs_dv[None, :], upd, mask=kd_mask)
        tl.store(den_ptr + row * K + offs_k, den, mask=offs_k < K)
    else:
        n_splits = tl.num_programs(1)
        ws = (row * n_splits + split) * K
        tl.store(ws_acc_ptr + (ws + offs_k[:, None]) * DV + offs_dv[None, :], acc, mask=kd_mask)
        tl.store(ws_den_ptr + ws + offs_k, den, mask=offs_k < K)


@triton.jit
def _slot_attention_bwd_kernel(
    q_ptr, k_ptr, v_ptr, slot_mask_ptr, input_mask_ptr,
    u32_ptr, den_ptr, dout_ptr, dattn_ptr,
    dq_ptr, dk_ptr, dv_ptr, ws_dq_ptr,
    K, N, DK, DV, n_per_split, qk_scale_log2, scale, eps,
    s_qb, s_qk, s_qd, s_kb, s_kn, s_kd, s_vb, s_vn, s_vd, s_smb, s_smk, s_imb, s_imn,
    s_gb, s_gk, s_gd, s_gab, s_gak, s_gan,
    HAS_SLOT_MASK: tl.constexpr, HAS_INPUT_MASK: tl.constexpr, HAS_DATTN: tl.constexpr, FINALIZE: tl.constexpr,
    BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr,
    PRECISION: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    n_begin = split * n_per_split
    n_end = tl.minimum(n_begin + n_per_split, N)

    offs_k = tl.arange(0, BLOCK_K)
    offs_dk = tl.arange(0, BLOCK_DK)
    offs_dv = tl.arange(0, BLOCK_DV)
    active = offs_k < K
    if HAS_SLOT_MASK:
        active = active & (tl.load(slot_mask_ptr + row * s_smb + offs_k * s_smk, mask=offs_k < K, other=0) != 0)
    any_active = tl.sum(active.to(tl.int32), axis=0) > 0

    qk_mask = (offs_k[:, None] < K) & (offs_dk[None, :] < DK)
    kv_mask = (offs_k[:, None] < K) & (offs_dv[None, :] < DV)
    q = tl.load(q_ptr + row * s_qb + offs_k[:, None] * s_qk + offs_dk[None, :] * s_qd, mask=qk_mask, other=0.0)
    q = q.to(tl.float32)
    q_log2 = q * qk_scale_log2
    den = tl.load(den_ptr + row * K + offs_k, mask=offs_k < K, other=0.0)
    inv_den = 1.0 / tl.where(den > 0, den, 1.0)  # (BLOCK_K,)
    dout = tl.load(dout_ptr + row * s_gb + offs_k[:, None] * s_gk + offs_dv[None, :] * s_gd, mask=kv_mask, other=0.0)
    dout = dout.to(tl.float32)  # (BLOCK_K, BLOCK_DV)
    upd = tl.load(u32_ptr + row * K * DV + offs_k[:, None] * DV + offs_dv[None, :], mask=kv_mask, other=0.0)
    # Renormalisation backward: d(w/den)/dw contributes -sum_n dwn[k,n] wn[k,n] = -dU_k . U_k to every input.
    c = tl.sum(dout * upd, axis=1)  # (BLOCK_K,)

    dq = tl.zeros((BLOCK_K, BLOCK_DK), dtype=tl.float32)
    for n0 in range(n_begin, n_end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        in_range = offs_n < n_end
        kt = tl.load(k_ptr + row * s_kb + offs_n[:, None] * s_kn + offs_dk[None, :] * s_kd,
                     mask=in_range[:, None] & (offs_dk[None, :] < DK), other=0.0).to(tl.float32)
        vt = tl.load(v_ptr + row * s_vb + offs_n[:, None] * s_vn + offs_dv[None, :] * s_vd,
                     mask=in_range[:, None] & (offs_dv[None, :] < DV), other=0.0).to(tl.float32)
        probs = _slot_probs(q_log2, kt, active, any_active, PRECISION)  # recomputed: (BLOCK_K, BLOCK_N)
        real = in_range
        if HAS_INPUT_MASK:
            real = real & (tl.load(input_mask_ptr + row * s_imb + offs_n * s_imn, mask=in_range, other=0) != 0)
        keep = active[:, None] & real[None, :]
        w_norm = tl.where(keep, probs + eps, 0.0) * inv_den[:, None]  # normalised weights

        # dv[n] = sum_k w_norm[k, n] dU[k]
        dv_blk = tl.dot(tl.trans(w_norm), dout, input_precision=PRECISION)  # (BLOCK_N, BLOCK_DV)
        tl.store(dv_ptr + row * N * DV + offs_n[:, None] * DV + offs_dv[None, :], dv_blk.to(dv_ptr.dtype.element_ty),
                 mask=in_range[:, None] & (offs_dv[None, :] < DV))

        # d loss / d probs: through the weighted mean, and through the returned attention map
        d_wnorm = tl.dot(dout, tl.trans(vt), input_precision=PRECISION)  # (BLOCK_K, BLOCK_N)
        dprobs = tl.where(keep, (d_wnorm - c[:, None]) * inv_den[:, None], 0.0)
        if HAS_DATTN:
            dattn = tl.load(dattn_ptr + row * s_gab + offs_k[:, None] * s_gak + offs_n[None, :] * s_gan,
                            mask=(offs_k[:, None] < K) & in_range[None, :], other=0.0).to(tl.float32)
            dprobs += tl.where(real[None, :], dattn, 0.0)
        # softmax over slots, backward: per column, elementwise across the K rows
        dlogits = probs * (dprobs - tl.sum(probs * dprobs, axis=0)[None, :])  # (BLOCK_K, BLOCK_N)

        dk_blk = tl.dot(tl.trans(dlogits), q, input_precision=PRECISION) * scale  # (BLOCK_N, BLOCK_DK)
        tl.store(dk_ptr + row * N * DK + offs_n[:, None] * DK + offs_dk[None, :], dk_blk.to(dk_ptr.dtype.element_ty),
                 mask=in_range[:, None] & (offs_dk[None, :] < DK))
        dq = tl.dot(dlogits, kt, dq, input_precision=PRECISION)

    if FINALIZE:
        tl.store(dq_ptr + row * K * DK + offs_k[:, None] * DK + offs_dk[None, :], dq * scale, mask=qk_mask)
    else:
        ws = (row * tl.num_programs(1) + split) * K
        tl.store(ws_dq_ptr + (ws + offs_k[:, None]) * DK + offs_dk[None, :], dq * scale, mask=qk_mask)


# --------------------------------------------------------------------------------------------- launch choice


@dataclass(frozen=True)
class SlotAttentionLaunch:
    """Tile sizes, warps and the N split of one call (see :func:`choose_launch`)."""

    block_n_fwd: int  # inputs per loop step, forward kernel
    warps_fwd: int
    block_n_bwd: int  # inputs per loop step, backward kernel
    warps_bwd: int
    splits: int = 1  # programs per batch row along N (partial sums added on the host)
    num_stages: int = 2


def _pow2_at_least(x: int, floor: int = _MIN_DOT) -> int:
    return max(floor, triton.next_power_of_2(x))


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 1  # the interpreter runs programs one after another: splitting N buys nothing there
    return torch.cuda.get_device_properties(device).multi_processor_count


# (BLOCK_D, fp32 inputs?) -> (block_n_fwd, warps_fwd, block_n_bwd, warps_bwd). Chosen from ptxas register counts of
# the kernels compiled ahead of time for sm_90 with Triton 3.6 (the GPU machines' version) and 3.9, num_stages=2:
# configurations that spill under either were dropped, and among the rest the one with the most resident warps and
# bytes in flight per SM was kept. Example, D = 128 bf16: forward 32 inputs x 4 warps = 168 (3.9) / 255 (3.6)
# registers, no spills, where 64 x 4 spills 52 bytes under 3.6; backward 16 x 4 = 140 / 177 registers, where 32 x 4
# spills. The backward holds q, dU, dq and the k, v, dk, dv tiles at once, hence its smaller blocks. Not yet
# confirmed by GPU timings: bench_slot_attention.py --sweep times the alternatives.
_TILES = {
    (64, False): (32, 8, 16, 4),
    (64, True): (32, 8, 16, 4),
    (128, False): (32, 4, 16, 4),
    (128, True): (32, 8, 16, 8),
    (256, False): (32, 8, 16, 8),
    (256, True): (16, 8, 16, 8),
}


def choose_launch(B: int, N: int, Dk: int, Dv: int, device: torch.device, fp32: bool = False) -> SlotAttentionLaunch:
    """Tiles from ``_TILES`` (widths above 256 fall back to the smallest tiles), clamped to N; N is split over
    several programs only when rows alone give fewer than ~2 programs per SM and each split keeps >= 4 blocks."""
    d = max(64, _pow2_at_least(Dk), _pow2_at_least(Dv))
    bn_f, w_f, bn_b, w_b = _TILES.get((d, fp32), (16, 8, 16, 8))
    n_cap = max(_MIN_DOT, triton.next_power_of_2(N))
    bn_f, bn_b = min(bn_f, n_cap), min(bn_b, n_cap)
    target_programs = 2 * _sm_count(device)
    splits = 1
    if device.type == "cuda" and B < target_programs:
        splits = max(1, min(triton.cdiv(target_programs, B), N // (4 * bn_f)))
    return SlotAttentionLaunch(block_n_fwd=bn_f, warps_fwd=w_f, block_n_bwd=bn_b, warps_bwd=w_b, splits=splits)


def _split_range(N: int, splits: int, block_n: int) -> tuple[int, int]:
    """(number of splits, inputs per split): splits cover N in whole blocks."""
    splits = max(1, min(splits, triton.cdiv(N, block_n)))
    n_per_split = triton.cdiv(triton.cdiv(N, splits), block_n) * block_n
    return triton.cdiv(N, n_per_split), n_per_split


def launch_grid(B: int, splits: int) -> tuple[int, int]:
    """(batch rows, N splits). Rows, the axis that grows (B*T frames; CEM candidates), are on grid axis x, which
    CUDA allows up to 2^31 - 1; the few splits go on y, limited to 65535."""
    return (B, splits)


# --------------------------------------------------------------------------------------------- host wrappers


def _check_inputs(q, k, v, slot_mask, input_mask) -> None:
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError(f"slot attention wants q (B,K,Dk), k (B,N,Dk), v (B,N,Dv); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    B, K, Dk = q.shape
    if 0 in q.shape or 0 in v.shape or k.shape[1] == 0:
        raise ValueError(f"slot attention got an empty input: q {tuple(q.shape)}, k {tuple(k.shape)}, v "
                         f"{tuple(v.shape)}")
    if k.shape[0] != B or v.shape[0] != B or k.shape[2] != Dk or v.shape[1] != k.shape[1]:
        raise ValueError(f"slot attention shapes disagree: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    # Mixed dtypes are fine (as in the reference): every tile is upcast to fp32 right after its load.
    if any(t.dtype not in (torch.float32, torch.bfloat16, torch.float16) for t in (q, k, v)):
        raise TypeError(f"slot attention kernel takes fp32/bf16/fp16 q, k, v; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v on different devices: {q.device}, {k.device}, {v.device}")
    for name, m, shape in (("slot_mask", slot_mask, (B, K)), ("input_mask", input_mask, (B, k.shape[1]))):
        if m is not None and (m.dtype != torch.bool or tuple(m.shape) != shape or m.device != q.device):
            raise ValueError(f"{name} must be a bool tensor of shape {shape} on {q.device}; got {m.dtype} "
                             f"{tuple(m.shape)} on {m.device}")


def _mask_arg(mask: Optional[torch.Tensor], dummy: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    if mask is None:
        return dummy, 0, 0
    m = mask.view(torch.uint8)  # same bytes; uint8 pointers behave the same on the GPU and in the interpreter
    return m, m.stride(0), m.stride(1)


def _precision(*tensors: torch.Tensor) -> str:
    """tf32 tensor cores when all inputs are bf16/fp16 (their values are exact in tf32). With an fp32 input, follow
    torch's own fp32 matmul setting: exact fp32 dots by default ("highest"), tf32 once the user allowed it for
    their matmuls (``torch.set_float32_matmul_precision("high")``), as torch's einsum in the reference would."""
    if any(t.dtype == torch.float32 for t in tensors) and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def slot_attention_fwd(q, k, v, eps: float, scale: float, slot_mask, input_mask, launch: SlotAttentionLaunch):
    """Forward launch. Returns (updates in v's dtype, attn in v's dtype, fp32 updates, fp32 per-slot mass)."""
    B, K, Dk = q.shape
    N, Dv = v.shape[1], v.shape[2]
    dev = q.device
    out = torch.empty((B, K, Dv), device=dev, dtype=v.dtype)
    attn = torch.empty((B, K, N), device=dev, dtype=v.dtype)
    u32 = out if v.dtype == torch.float32 else torch.empty((B, K, Dv), device=dev, dtype=torch.float32)
    den = torch.empty((B, K), device=dev, dtype=torch.float32)
    splits, n_per_split = _split_range(N, launch.splits, launch.block_n_fwd)
    finalize = splits == 1
    if finalize:
        ws_acc = ws_den = den  # unused
    else:
        ws_acc = torch.empty((B, splits, K, Dv), device=dev, dtype=torch.float32)
        ws_den = torch.empty((B, splits, K), device=dev, dtype=torch.float32)
    sm, s_smb, s_smk = _mask_arg(slot_mask, q)
    im, s_imb, s_imn = _mask_arg(input_mask, q)
    _slot_attention_fwd_kernel[launch_grid(B, splits)](
        q, k, v, sm, im, out, u32, den, attn, ws_acc, ws_den,
        K, N, Dk, Dv, n_per_split, scale * LOG2E, eps,
        *q.stride(), *k.stride(), *v.stride(), s_smb, s_smk, s_imb, s_imn, *out.stride(), *attn.stride(),
        HAS_SLOT_MASK=slot_mask is not None, HAS_INPUT_MASK=input_mask is not None, FINALIZE=finalize,
        STORE_U32=u32 is not out, BLOCK_K=_pow2_at_least(K), BLOCK_N=launch.block_n_fwd, BLOCK_DK=_pow2_at_least(Dk),
        BLOCK_DV=_pow2_at_least(Dv), PRECISION=_precision(q, k, v), num_warps=launch.warps_fwd,
        num_stages=launch.num_stages,
    )
    if not finalize:  # add up the splits: (B, splits, K, ...) -> (B, K, ...)
        den = ws_den.sum(dim=1)
        u32 = ws_acc.sum(dim=1) / torch.where(den > 0, den, torch.ones_like(den))[:, :, None]
        out = u32.to(v.dtype)
    return out, attn, u32, den


def slot_attention_bwd(q, k, v, eps, scale, slot_mask, input_mask, u32, den, dout, dattn, launch: SlotAttentionLaunch):
    """Backward launch. Returns (dq, dk, dv) in the dtypes of q, k, v."""
    B, K, Dk = q.shape
    N, Dv = v.shape[1], v.shape[2]
    dev = q.device
    # fp32 gradient buffers: the kernel writes its fp32 results directly; cast once at the end if needed.
    dq = torch.empty((B, K, Dk), device=dev, dtype=torch.float32)
    dk = torch.empty((B, N, Dk), device=dev, dtype=torch.float32 if k.dtype == torch.float32 else k.dtype)
    dv = torch.empty((B, N, Dv), device=dev, dtype=torch.float32 if v.dtype == torch.float32 else v.dtype)
    splits, n_per_split = _split_range(N, launch.splits, launch.block_n_bwd)
    finalize = splits == 1
    ws_dq = dq if finalize else torch.empty((B, splits, K, Dk), device=dev, dtype=torch.float32)
    sm, s_smb, s_smk = _mask_arg(slot_mask, q)
    im, s_imb, s_imn = _mask_arg(input_mask, q)
    g_att = dattn if dattn is not None else dout
    _slot_attention_bwd_kernel[launch_grid(B, splits)](
        q, k, v, sm, im, u32, den, dout, g_att, dq, dk, dv, ws_dq,
        K, N, Dk, Dv, n_per_split, scale * LOG2E, scale, eps,
        *q.stride(), *k.stride(), *v.stride(), s_smb, s_smk, s_imb, s_imn,
        *dout.stride(), *(g_att.stride() if dattn is not None else (0, 0, 0)),
        HAS_SLOT_MASK=slot_mask is not None, HAS_INPUT_MASK=input_mask is not None, HAS_DATTN=dattn is not None,
        FINALIZE=finalize, BLOCK_K=_pow2_at_least(K), BLOCK_N=launch.block_n_bwd, BLOCK_DK=_pow2_at_least(Dk),
        BLOCK_DV=_pow2_at_least(Dv), PRECISION=_precision(q, k, v), num_warps=launch.warps_bwd,
        num_stages=launch.num_stages,
    )
    if not finalize:
        dq = ws_dq.sum(dim=1)
    return dq.to(q.dtype), dk, dv


# --------------------------------------------------------------------------------------------- torch.library ops

# The launches are registered as torch.library custom ops (fake implementations give shapes and dtypes; autograd is
# registered on the forward op), so torch.compile(fullgraph=True) traces slot attention through the kernel as one
# opaque op instead of breaking the graph at a Python autograd.Function. triton_op + wrap_triton would let inductor
# see into the kernel, but wrap_triton refuses the interpreter's kernels, so the CPU tests could not check that
# path; custom_op behaves the same natively and interpreted. A given tile choice travels as a list of ints; an empty
# list lets the op choose when it runs (the choice reads torch's fp32 matmul precision, which dynamo cannot trace).
# An op's outputs may not alias each other, so the fp32 updates the backward needs come back empty when the
# updates themselves are fp32 (the backward then reads those).


def _launch_args(launch: Optional[SlotAttentionLaunch]) -> list[int]:
    if launch is None:
        return []
    return [launch.block_n_fwd, launch.warps_fwd, launch.block_n_bwd, launch.warps_bwd, launch.splits,
            launch.num_stages]


def _launch_of(args: list[int], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> SlotAttentionLaunch:
    if args:
        return SlotAttentionLaunch(*args)
    fp32 = _precision(q, k, v) == "ieee"
    return choose_launch(q.shape[0], k.shape[1], q.shape[2], v.shape[2], q.device, fp32=fp32)


@torch.library.custom_op("cjepa::slot_attention_fwd", mutates_args=())
def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float, scale: float,
            slot_mask: Optional[torch.Tensor], input_mask: Optional[torch.Tensor],
            launch: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    out, attn, u32, den = slot_attention_fwd(q, k, v, eps, scale, slot_mask, input_mask, _launch_of(launch, q, k, v))
    if u32 is out:
        u32 = out.new_empty((0,))
    return out, attn, u32, den


@_fwd_op.register_fake
def _(q, k, v, eps, scale, slot_mask, input_mask, launch):
    B, K, _ = q.shape
    N, Dv = v.shape[1], v.shape[2]
    u32_shape = (0,) if v.dtype == torch.float32 else (B, K, Dv)
    return (v.new_empty((B, K, Dv)), v.new_empty((B, K, N)), v.new_empty(u32_shape, dtype=torch.float32),
            v.new_empty((B, K), dtype=torch.float32))


@torch.library.custom_op("cjepa::slot_attention_bwd", mutates_args=())
def _bwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float, scale: float,
            slot_mask: Optional[torch.Tensor], input_mask: Optional[torch.Tensor], u32: torch.Tensor,
            den: torch.Tensor, dout: torch.Tensor, dattn: Optional[torch.Tensor],
            launch: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return slot_attention_bwd(q, k, v, eps, scale, slot_mask, input_mask, u32, den, dout, dattn,
                              _launch_of(launch, q, k, v))


@_bwd_op.register_fake
def _(q, k, v, eps, scale, slot_mask, input_mask, u32, den, dout, dattn, launch):
    return torch.empty_like(q, memory_format=torch.contiguous_format), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, eps, scale, slot_mask, input_mask, launch = inputs
    out, _, u32, den = output
    ctx.save_for_backward(q, k, v, slot_mask, input_mask, out if u32.numel() == 0 else u32, den)
    ctx.eps, ctx.scale, ctx.launch = eps, scale, launch
    ctx.mark_non_differentiable(u32, den)
    ctx.set_materialize_grads(False)  # an unused attn output arrives as None: the kernel skips its term


def _backward(ctx, dout, dattn, _du32, _dden):
    q, k, v, slot_mask, input_mask, u32, den = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros((q.shape[0], q.shape[1], v.shape[2]), device=q.device, dtype=torch.float32)
    dq, dk, dv = _bwd_op(q, k, v, ctx.eps, ctx.scale, slot_mask, input_mask, u32, den, dout, dattn, ctx.launch)
    return dq, dk, dv, None, None, None, None, None


_fwd_op.register_autograd(_backward, setup_context=_setup_context)


def slot_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    eps: float = 1e-8,
    scale: Optional[float] = None,
    slot_mask: Optional[torch.Tensor] = None,
    input_mask: Optional[torch.Tensor] = None,
    launch: Optional[SlotAttentionLaunch] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused slot-attention update: same arguments and results as ``slot_attention_reference``."""
    _check_inputs(q, k, v, slot_mask, input_mask)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    out, attn, _, _ = _fwd_op(q, k, v, float(eps), scale, slot_mask, input_mask, _launch_args(launch))
    return out, attn
