"""Save `cjepa_kernels.compile_report` as result rows: registers, spills and shared memory per kernel.

The report compiles every Triton kernel for a GPU architecture ahead of time, without a GPU, and reads
``ptxas -v``; it prints. This collector runs the same jobs and appends one JSONL row per kernel (name, dtype,
registers, spill and shared bytes, triton version, target arch) with git SHA, machine and date, so that the
register counts quoted in benchmarks/README.md have a committed file behind them.

    python benchmarks/compile_rows.py                 # sm_90, every kernel/shape/dtype of the report
    python benchmarks/compile_rows.py --quick --out /tmp/rows.jsonl
"""

from __future__ import annotations

import os

os.environ.pop("TRITON_INTERPRET", None)  # interpreted kernels cannot be compiled; must happen before triton loads
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_rows  # noqa: E402  (also makes `cjepa_kernels` importable from a bare checkout)


def collect(arch: int, quick: bool) -> list[dict]:
    """One row per compiled kernel, in the report's order."""
    import triton
    from cjepa_kernels import compile_report as cr

    if quick:
        jobs = [*cr.slot_attention_jobs(arch, widths=(128,)),
                *cr.predictor_attention_jobs(arch, sizes=((112, 8), (112, 64)))]
    else:
        jobs = [*cr.slot_attention_jobs(arch), *cr.predictor_attention_jobs(arch)]
    return [{"kernel": r.name, "arch": arch, "triton": triton.__version__, "registers": r.registers,
             "spill_bytes": r.spill_bytes, "shared_bytes": r.shared_bytes, "error": r.error, "quick": quick}
            for r in jobs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability x 10 (90 = H100/H200)")
    p.add_argument("--quick", action="store_true", help="only the target shapes, as the report's --quick")
    p.add_argument("--out", default=None, help="JSONL file (default benchmarks/results/cpu_<date>.jsonl)")
    args = p.parse_args(argv)
    rows = collect(args.arch, args.quick)
    for r in rows:
        print(f"  {r['kernel']}: registers={r['registers']} spill_bytes={r['spill_bytes']} {r['error']}")
    errors = sum(bool(r["error"]) for r in rows)
    spills = sum(bool(r["spill_bytes"]) for r in rows)
    print(f"{len(rows)} kernels: {errors} compile errors, {spills} with register spills")
    print(f"rows appended to {write_rows(rows, torch.device('cpu'), 'compile_report', args.out)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
