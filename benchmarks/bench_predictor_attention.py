"""Benchmark: the predictor attention kernel (kernels/predictor_attention.py) against torch.

Providers: ``torch`` (cjepa.backends.references.attention_reference, eager: the reference and kernels.attention=torch),
``compile`` (the reference under torch.compile), ``sdpa`` (torch's scaled_dot_product_attention,
kernels.attention=sdpa, which contains FlashAttention / memory-efficient kernels) and ``triton`` (the kernel;
CUDA only). Inputs are the predictor's real layout: q, k, v are strided views of one packed (B, L, 3, H, E)
projection. Modes ``fwd`` / ``bwd`` / ``full`` as in bench_slot_attention.py. Before timing, every provider's
output and gradients are compared with the fp32 reference (kernel: the dtype's test tolerance; torch baselines,
which round scores and weights to bf16/fp16 on the way, 3x that).

    python benchmarks/bench_predictor_attention.py --quick
    python benchmarks/bench_predictor_attention.py --dtype bf16 fp32 --mask
    python benchmarks/bench_predictor_attention.py --sweep        # GPU: time tile choices at the CLEVRER shape
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/common.py then puts the repo root on the path
from common import peak_memory, ratio_table, time_fn, timing_row, write_rows  # noqa: E402

from cjepa.backends.attention import attention  # noqa: E402
from cjepa.backends.references import attention_reference  # noqa: E402
from cjepa.utils.report import table  # noqa: E402
from tests.helpers import assert_close_verbose  # noqa: E402
from tests.kernels.common import TOLERANCES  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# (B, H, L, E): CLEVRER predictor (batch 256, 16 heads, 16 frames x 7 slots = 112 tokens) with the original's head
# width 128/16 = 8 and with head_dim=64; Push-T (4 slots + proprio + action = 6 nodes x 4 frames = 24 tokens).
SHAPES = [(256, 16, 112, 8), (256, 16, 112, 64), (256, 16, 24, 8), (64, 16, 112, 16)]
QUICK = [(256, 16, 112, 8), (256, 16, 112, 64)]
CPU_BATCH_DIVISOR = 16


def _flops(B, H, L, E, mode: str) -> float:
    """FlashAttention's convention: fwd 2 matmuls (4 B H L^2 E), bwd 2.5x the forward."""
    fwd = 4.0 * B * H * L * L * E
    return {"fwd": fwd, "bwd": 2.5 * fwd, "full": 3.5 * fwd}[mode]


def _setup(shape, dtype, device, with_mask: bool, seed=0):
    B, H, L, E = shape
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(B, L, 3, H, E, generator=g).to(device, dtype)
    key_mask = None
    if with_mask:
        key_mask = torch.rand(B, L, generator=g) < 0.8
        key_mask[:, 0] = True
        key_mask = key_mask.to(device)
    dout = torch.randn(B, H, L, E, generator=g).to(device, dtype)
    return qkv, key_mask, dout


def _split(qkv):
    """(B, L, 3, H, E) -> three (B, H, L, E) views, as the predictor's SelfAttention makes them."""
    qkv = qkv.permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def _providers(device: torch.device) -> dict:
    for knob in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 128)
    torch._functorch.config.donated_buffer = False  # the bwd mode re-runs one compiled backward (retain_graph)
    reference = lambda q, k, v, m: attention_reference(q, k, v, m)[0]  # noqa: E731
    providers = {
        "torch": reference,
        "compile": torch.compile(reference, dynamic=False),
        "sdpa": lambda q, k, v, m: attention(q, k, v, backend="sdpa", key_mask=m),
    }
    if device.type == "cuda":
        from cjepa_kernels.predictor_attention import predictor_attention

        providers["triton"] = predictor_attention
    return providers


def _forward_backward(fn, qkv, key_mask, dout):
    leaf = qkv.detach().clone().requires_grad_()
    out = fn(*_split(leaf), key_mask)
    out.backward(dout)
    return out, leaf.grad  # leaf.grad (B, L, 3, H, E) holds dq, dk, dv


def check_agreement(providers, qkv, key_mask, dout, dtype) -> None:
    """Every provider against the fp32 reference on the same values; fast-but-wrong cannot post a ratio."""
    want = _forward_backward(lambda q, k, v, m: attention_reference(q, k, v, m)[0], qkv.float(), key_mask, dout.float())
    atol, rtol = TOLERANCES[dtype]
    for name, fn in providers.items():
        slack = 1.0 if (name == "triton" or dtype == torch.float32) else 3.0
        got = _forward_backward(fn, qkv, key_mask, dout)
        for what, a, b in zip(("out", "dqkv"), got, want):
            assert_close_verbose(a, b, slack * atol, slack * rtol, name=f"{name} {what}")


def _callable(fn, qkv, key_mask, dout, mode):
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(*_split(qkv), key_mask)
        return run
    leaf = qkv.detach().clone().requires_grad_()
    if mode == "full":
        def run():
            leaf.grad = None
            fn(*_split(leaf), key_mask).backward(dout)
        return run
    out = fn(*_split(leaf), key_mask)

    def run():
        leaf.grad = None
        out.backward(dout, retain_graph=True)
    return run


def bench_shape(shape, dtype_name, modes, device, repeats, with_mask) -> tuple[list[dict], list[list]]:
    dtype = DTYPES[dtype_name]
    qkv, key_mask, dout = _setup(shape, dtype, device, with_mask)
    providers = _providers(device)
    check_agreement(providers, qkv, key_mask, dout, dtype)
    rows, summary = [], []
    for mode in modes:
        timings, peaks = {}, {}
        for name, fn in providers.items():
            run = _callable(fn, qkv, key_mask, dout, mode)
            timings[name] = time_fn(run, device, warmup=5, repeats=repeats,
                                    min_time_s=0.2 if device.type == "cuda" else 0)
            peaks[name] = peak_memory(run, device)
        flops = _flops(*shape, mode)
        print(f"\n## predictor attention {mode}  (B, H, L, E) = {shape}  {dtype_name}  key mask: {with_mask}  "
              f"[{flops / 1e9:.2f} GFLOP]")
        print(ratio_table(timings, "torch", unit_per_call=flops / 1e12, unit_name="TFLOP/s"))
        mem = [[n, p / 2**20 if p is not None else "n/a"] for n, p in peaks.items()]
        if device.type == "cuda":
            print(table(mem, ["provider", "peak MiB"]))
        for name, t in timings.items():
            rows.append({"kernel": "predictor_attention", "provider": name, "mode": mode, "shape": list(shape),
                         "dtype": dtype_name, "key_mask": with_mask, **timing_row(t),
                         "tflop_per_s": flops / (t.median_ms / 1e3) / 1e12, "peak_bytes": peaks[name]})
        best = "triton" if "triton" in timings else min(("compile", "sdpa"), key=lambda n: timings[n].median_ms)
        summary.append([mode, "x".join(map(str, shape)), dtype_name, best,
                        *(timings[ref].median_ms / timings[best].median_ms for ref in ("torch", "compile", "sdpa")),
                        flops / (timings[best].median_ms / 1e3) / 1e12])
    return rows, summary


def sweep_tiles(shape, dtype_name, device, repeats) -> None:
    """Time the forward and the backward kernel over a grid of tiles and warps (each checked for correctness
    first), to retune ``choose_launch`` on a new GPU."""
    from dataclasses import replace

    from cjepa_kernels.predictor_attention import choose_launch, predictor_attention

    dtype = DTYPES[dtype_name]
    qkv, key_mask, dout = _setup(shape, dtype, device, with_mask=False)
    B, H, L, E = shape
    default = choose_launch(L, E, fp32=dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest")
    grids = {
        "fwd": [dict(block_m=bm, block_n=bn, warps_fwd=w, num_stages=st)
                for bm, bn, w, st in itertools.product((16, 32, 64, 128), (32, 64, 128), (2, 4, 8), (1, 2))],
        "bwd": [dict(block_bwd=bb, warps_bwd=w, num_stages=st)
                for bb, w, st in itertools.product((16, 32, 64), (2, 4, 8), (1, 2))],
    }
    for mode, grid in grids.items():
        results = []
        for change in grid:
            launch = replace(default, **change)
            fn = lambda q, k, v, m, launch=launch: predictor_attention(q, k, v, m, launch=launch)  # noqa: E731
            cells = list(change.values())
            try:
                check_agreement({"triton": fn}, qkv, key_mask, dout, dtype)
                t = time_fn(_callable(fn, qkv, key_mask, dout, mode), device, warmup=3, repeats=repeats)
            except Exception as err:  # out of shared memory / registers: report and go on
                results.append([*cells, float("nan"), type(err).__name__])
                continue
            results.append([*cells, t.median_ms, "default" if launch == default else ""])
        results.sort(key=lambda r: (r[-2] != r[-2], r[-2]))
        print(f"\n## tile sweep, {mode} kernel, {shape} {dtype_name} (default: {default})")
        print(table(results[:25], [*grid[0].keys(), "median ms", "note"]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 shapes, bf16 only")
    p.add_argument("--dtype", nargs="+", default=None, choices=sorted(DTYPES), help="default: bf16 fp32 (quick: bf16)")
    p.add_argument("--modes", nargs="+", default=["fwd", "bwd", "full"], choices=["fwd", "bwd", "full"])
    p.add_argument("--mask", action="store_true", help="with a key mask (20%% of keys masked)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sweep", action="store_true", help="GPU: time tile choices at the first shape instead")
    p.add_argument("--write", action="store_true", help="append JSONL rows to benchmarks/results/")
    p.add_argument("--out", default=None, help="JSONL file to append to (implies --write)")
    args = p.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1 is set: torch.compile's Triton code would run in the interpreter. Unset it to "
              "benchmark.")
        return 2
    device = torch.device(args.device)
    dtypes = args.dtype or (["bf16"] if args.quick else ["bf16", "fp32"])
    shapes = QUICK if args.quick else SHAPES
    if device.type != "cuda":
        print("note: no CUDA device: timing torch eager, torch.compile and sdpa only. The Triton kernel needs a GPU "
              "to be timed (under TRITON_INTERPRET=1 it runs, for correctness, thousands of times slower). CPU shapes "
              f"use B / {CPU_BATCH_DIVISOR}.")
        shapes = [(max(1, B // CPU_BATCH_DIVISOR), H, L, E) for B, H, L, E in shapes]
        if args.dtype is None:
            dtypes = ["fp32"]  # CPU bf16 matmuls are emulated and slow: not the case worth timing there
    if args.sweep:
        if device.type != "cuda":
            print("--sweep times Triton tiles: it needs a CUDA device")
            return 2
        for d in dtypes:
            sweep_tiles(shapes[0], d, device, args.repeats)
        return 0
    all_rows, summary = [], []
    for shape, d in itertools.product(shapes, dtypes):
        rows, summ = bench_shape(shape, d, args.modes, device, args.repeats, args.mask)
        all_rows += rows
        summary += summ
    print("\n## summary (provider = triton on GPU, else the faster of compile / sdpa)")
    print(table(summary, ["mode", "shape", "dtype", "provider", "vs torch", "vs compile", "vs sdpa", "TFLOP/s"]))
    if args.write or args.out:
        path = write_rows(all_rows, device, "bench_predictor_attention", args.out)
        print(f"rows appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
