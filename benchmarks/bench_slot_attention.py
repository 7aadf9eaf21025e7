"""Benchmark: the fused slot-attention update (kernels/slot_attention.py) against its torch reference.

Providers: ``torch`` (cjepa.backends.references.slot_attention_reference, eager), ``compile`` (the same function
under torch.compile, the fair baseline) and ``triton`` (the kernel; CUDA only: the Triton interpreter is a
correctness tool, far too slow to time). Modes: ``fwd`` (no autograd), ``bwd`` (backward of a retained graph)
and ``full`` (forward + backward). Every provider's forward and gradients are checked against the reference
before anything is timed.

    python benchmarks/bench_slot_attention.py --quick            # 2 shapes, bf16, all modes
    python benchmarks/bench_slot_attention.py --dtype fp32 bf16  # the full sweep
    python benchmarks/bench_slot_attention.py --sweep            # GPU: time tile choices at the target shape
    python benchmarks/bench_slot_attention.py --quick --write    # also append JSONL rows to benchmarks/results/
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

from cjepa.backends.references import slot_attention_reference  # noqa: E402
from cjepa.utils.report import table  # noqa: E402
from tests.helpers import assert_close_verbose  # noqa: E402
from tests.kernels.common import TOLERANCES  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# (B, K, N, D): B = batch x frames. The target (1536, 7, 196, 128) is VideoSAUR's grouper on a batch of 256 clips
# of 6 frames (7 slots over 14x14 DINOv2 patches); then more slots / wider; SAVi's 64x64 grid with few rows; Push-T.
SHAPES = [(1536, 7, 196, 128), (4096, 7, 196, 128), (1536, 11, 196, 256), (256, 6, 4096, 64), (1536, 4, 196, 64)]
QUICK = [(1536, 7, 196, 128), (256, 6, 4096, 64)]
CPU_ROW_DIVISOR = 16  # CPU runs the same shapes with B / 16 rows: the same per-row work, seconds not minutes


def _bytes_moved(B, K, N, D, elt: int, mode: str) -> int:
    """Minimum HBM traffic: fwd reads q, k, v and writes updates + attn; bwd reads q, k, v, dU, dattn and the
    saved (B, K) mass + fp32 updates, writes dq, dk, dv."""
    fwd = elt * (B * K * D + 2 * B * N * D + B * K * D + B * K * N)
    bwd = elt * (B * K * D + 2 * B * N * D + B * K * D + B * K * N + B * K * D + 2 * B * N * D) + 4 * (
        B * K * D + B * K
    )
    return {"fwd": fwd, "bwd": bwd, "full": fwd + bwd}[mode]


def _flops(B, K, N, D, mode: str) -> float:
    """Matmul flops: fwd q k^T and w v (2 x 2BKND); bwd dU v^T, w^T dU, ds k, ds^T q (4 x 2BKND)."""
    fwd, bwd = 4.0 * B * K * N * D, 8.0 * B * K * N * D
    return {"fwd": fwd, "bwd": bwd, "full": fwd + bwd}[mode]


def _setup(shape, dtype, device, seed=0):
    """Inputs (with a realistic input mask: 10% padding in every row) and upstream gradients for one shape."""
    B, K, N, D = shape
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(s, generator=g).to(device, dtype) for s in ((B, K, D), (B, N, D), (B, N, D)))
    input_mask = (torch.rand(B, N, generator=g) < 0.9).to(device)
    dout = torch.randn(B, K, D, generator=g).to(device, dtype)
    dattn = torch.randn(B, K, N, generator=g).to(device, dtype) * 0.01
    return (q, k, v), input_mask, (dout, dattn)


def _providers(device: torch.device) -> dict:
    # Dynamo caches compiled graphs per code object; every (shape, dtype, grad mode) is one more graph.
    for knob in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 128)
    torch._functorch.config.donated_buffer = False  # the bwd mode re-runs one compiled backward (retain_graph)
    providers = {"torch": slot_attention_reference, "compile": torch.compile(slot_attention_reference, dynamic=False)}
    if device.type == "cuda":
        from cjepa_kernels.slot_attention import slot_attention_triton

        providers["triton"] = slot_attention_triton
    return providers


def _forward_backward(fn, inputs, input_mask, grads, **kw):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    upd, attn = fn(*leaves, input_mask=input_mask, **kw)
    torch.autograd.backward((upd, attn), grads)
    return upd, attn, *(t.grad for t in leaves)


def check_agreement(providers, inputs, input_mask, grads, dtype) -> None:
    """Fast-but-wrong cannot post a ratio: every provider's outputs and gradients must match the reference."""
    want = _forward_backward(slot_attention_reference, inputs, input_mask, grads)
    atol, rtol = TOLERANCES[dtype]
    for name, fn in providers.items():
        got = _forward_backward(fn, inputs, input_mask, grads)
        for what, a, b in zip(("updates", "attn", "dq", "dk", "dv"), got, want):
            assert_close_verbose(a, b, atol, rtol, name=f"{name} {what}")


def _callables(fn, inputs, input_mask, grads, mode):
    """A zero-argument callable doing one `mode` step with provider `fn`."""
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(*inputs, input_mask=input_mask)
        return run
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    if mode == "full":
        def run():
            for t in leaves:
                t.grad = None
            torch.autograd.backward(fn(*leaves, input_mask=input_mask), grads)
        return run
    outs = fn(*leaves, input_mask=input_mask)

    def run():
        for t in leaves:
            t.grad = None
        torch.autograd.backward(outs, grads, retain_graph=True)
    return run


def bench_shape(shape, dtype_name, modes, device, repeats) -> tuple[list[dict], list[list]]:
    dtype = DTYPES[dtype_name]
    inputs, input_mask, grads = _setup(shape, dtype, device)
    providers = _providers(device)
    check_agreement(providers, inputs, input_mask, grads, dtype)
    rows, summary = [], []
    elt = torch.tensor([], dtype=dtype).element_size()
    for mode in modes:
        timings, peaks = {}, {}
        for name, fn in providers.items():
            run = _callables(fn, inputs, input_mask, grads, mode)
            timings[name] = time_fn(run, device, warmup=5, repeats=repeats,
                                    min_time_s=0.2 if device.type == "cuda" else 0)
            peaks[name] = peak_memory(run, device)
        gbytes, flops = _bytes_moved(*shape, elt, mode) / 1e9, _flops(*shape, mode)
        print(f"\n## slot attention {mode}  (B, K, N, D) = {shape}  {dtype_name}  [{gbytes:.3f} GB min traffic, "
              f"{flops / 1e9:.2f} GFLOP]")
        print(ratio_table(timings, "torch", unit_per_call=gbytes, unit_name="GB/s"))
        for name, t in timings.items():
            rows.append({"kernel": "slot_attention", "provider": name, "mode": mode, "shape": list(shape),
                         "dtype": dtype_name, **timing_row(t), "gb_per_s": gbytes / (t.median_ms / 1e3),
                         "tflop_per_s": flops / (t.median_ms / 1e3) / 1e12, "peak_bytes": peaks[name]})
        best = "triton" if "triton" in timings else "compile"
        summary.append([mode, "x".join(map(str, shape)), dtype_name, best,
                        timings["torch"].median_ms / timings[best].median_ms,
                        timings["compile"].median_ms / timings[best].median_ms,
                        gbytes / (timings[best].median_ms / 1e3), flops / (timings[best].median_ms / 1e3) / 1e12])
    return rows, summary


def sweep_tiles(shape, dtype_name, device, repeats) -> None:
    """Time the forward and the backward kernel over a grid of (inputs per step, warps, pipeline stages), each
    checked for correctness first, to retune ``choose_launch`` on a new GPU."""
    from dataclasses import replace

    from cjepa_kernels.slot_attention import choose_launch, slot_attention_triton

    dtype = DTYPES[dtype_name]
    inputs, input_mask, grads = _setup(shape, dtype, device)
    B, K, N, D = shape
    fp32 = dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest"
    default = choose_launch(B, N, D, D, device, fp32=fp32)
    for mode in ("fwd", "bwd"):
        results = []
        for block_n, warps, stages in itertools.product((16, 32, 64, 128), (2, 4, 8), (1, 2, 3)):
            if mode == "fwd":
                launch = replace(default, block_n_fwd=block_n, warps_fwd=warps, num_stages=stages)
            else:
                launch = replace(default, block_n_bwd=block_n, warps_bwd=warps, num_stages=stages)
            fn = lambda *a, launch=launch, **kw: slot_attention_triton(*a, launch=launch, **kw)  # noqa: E731
            try:
                check_agreement({"triton": fn}, inputs, input_mask, grads, dtype)
                t = time_fn(_callables(fn, inputs, input_mask, grads, mode), device, warmup=3, repeats=repeats)
            except Exception as err:  # out of shared memory / registers: report and go on
                results.append([block_n, warps, stages, float("nan"), type(err).__name__])
                continue
            results.append([block_n, warps, stages, t.median_ms, "default" if launch == default else ""])
        results.sort(key=lambda r: (r[3] != r[3], r[3]))
        print(f"\n## tile sweep, {mode} kernel, {shape} {dtype_name} (default: {default})")
        print(table(results, ["block_n", "warps", "stages", "median ms", "note"]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 shapes, bf16 only")
    p.add_argument("--dtype", nargs="+", default=None, choices=sorted(DTYPES), help="default: bf16 fp32 (quick: bf16)")
    p.add_argument("--modes", nargs="+", default=["fwd", "bwd", "full"], choices=["fwd", "bwd", "full"])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sweep", action="store_true", help="GPU: time tile choices at the target shape instead")
    p.add_argument("--write", action="store_true", help="append JSONL rows to benchmarks/results/")
    p.add_argument("--out", default=None, help="JSONL file to append to (implies --write)")
    args = p.parse_args()
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1 is set: torch.compile's Triton code would run in the interpreter. Unset it to "
              "benchmark.")
        return 2
    device = torch.device(args.device)
    dtypes = args.dtype or (["bf16"] if args.quick else ["bf16", "fp32"])
    if device.type != "cuda" and args.dtype is None:
        dtypes = ["fp32"]  # CPU matmuls in bf16 are emulated and slow: not the case worth timing there
    shapes = QUICK if args.quick else SHAPES
    if device.type != "cuda":
        print("note: no CUDA device: timing torch eager vs torch.compile only. The Triton kernel needs a GPU to be "
              "timed (under TRITON_INTERPRET=1 it runs, for correctness, thousands of times slower). CPU shapes use "
              f"B / {CPU_ROW_DIVISOR} rows.")
        shapes = [(max(1, B // CPU_ROW_DIVISOR), K, N, D) for B, K, N, D in shapes]
        dtypes = [d for d in dtypes if d != "fp16"]
    if args.sweep:
        if device.type != "cuda":
            print("--sweep times Triton tiles: it needs a CUDA device")
            return 2
        for d in dtypes:
            sweep_tiles(shapes[0], d, device, args.repeats)
        return 0
    all_rows, summary = [], []
    for shape, d in itertools.product(shapes, dtypes):
        rows, summ = bench_shape(shape, d, args.modes, device, args.repeats)
        all_rows += rows
        summary += summ
    best = "triton" if device.type == "cuda" else "compile"
    print(f"\n## summary ({best} = the fastest non-reference provider measured here)")
    print(table(summary, ["mode", "shape", "dtype", "provider", "vs torch", "vs compile", "GB/s", "TFLOP/s"]))
    if args.write or args.out:
        path = write_rows(all_rows, device, "bench_slot_attention", args.out)
        print(f"rows appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
