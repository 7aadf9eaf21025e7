"""Compile every kernel for a GPU architecture without a GPU, and report registers, spills and shared memory.

The Triton interpreter checks what kernels compute, but it skips the whole GPU lowering (layouts, ``tl.dot``
shape rules, register allocation). This tool runs that lowering ahead of time for a target such as sm_90 (H100)
on any machine, then asks ``ptxas -v`` (shipped inside the triton wheel) for each kernel's register count and
spill bytes at the launch configuration ``choose_launch`` picks for the real shapes. The tile tables in
``kernels/slot_attention.py`` and ``kernels/predictor_attention.py`` were chosen from these numbers.

    python -m cjepa_kernels.compile_report                 # sm_90, the default launch configurations
    python -m cjepa_kernels.compile_report --arch 80       # A100
    python -m cjepa_kernels.compile_report --strict        # exit 1 on a compile error (for CI)
    python -m cjepa_kernels.compile_report --no-spills     # ... or on a register spill (when retuning tiles)

It must run without ``TRITON_INTERPRET=1`` (interpreted kernels cannot be compiled); it clears the variable
itself when run as a module, before triton is imported.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # must happen before triton is imported
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton >= 3.9 warns when unset; 1 = the GPU default

import argparse  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import triton  # noqa: E402
from cjepa_kernels import predictor_attention as pa  # noqa: E402
from cjepa_kernels import slot_attention as sa  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

_FLOAT_SCALARS = {"qk_scale_log2", "eps", "scale"}


@dataclass
class CompileResult:
    name: str
    registers: int | None
    spill_bytes: int | None
    shared_bytes: int | None
    error: str = ""


def _signature(fn, dtype: str, constexprs: dict, fp32_ptrs: set[str], mask_ptrs: set[str]) -> dict[str, str]:
    sig = {}
    for arg in fn.arg_names:
        if arg in constexprs:
            sig[arg] = "constexpr"
        elif arg.endswith("_ptr"):
            sig[arg] = "*u8" if arg in mask_ptrs else ("*fp32" if arg in fp32_ptrs else f"*{dtype}")
        else:
            sig[arg] = "fp32" if arg in _FLOAT_SCALARS else "i32"
    return sig


def _ptxas_candidates(arch: int) -> list[Path]:
    """The ptxas triton itself uses for `arch` (3.6 uses the CUDA 12 ``ptxas`` below sm_100, 3.9 the CUDA 13
    ``ptxas-blackwell`` everywhere), then the other binary shipped in the wheel as a fallback."""
    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    found = [bin_dir / "ptxas-blackwell", bin_dir / "ptxas"]
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        found.insert(0, Path(get_ptxas(arch).path))
    except (ImportError, AttributeError, RuntimeError):
        pass
    return [p for p in dict.fromkeys(found) if p.exists()]


def _ptxas_usage(ptx: str, arch: int) -> tuple[int | None, int | None]:
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        for ptxas in _ptxas_candidates(arch):
            out = subprocess.run([str(ptxas), "-v", f"--gpu-name={gpu}", str(src), "-o",
                                  str(src.with_suffix(".cubin"))],
                                 capture_output=True, text=True)
            regs = re.search(r"Used (\d+) registers", out.stderr)
            spills = re.search(r"(\d+) bytes spill stores", out.stderr)
            if out.returncode == 0 and regs:
                return int(regs.group(1)), int(spills.group(1)) if spills else 0
    return None, None


def compile_kernel(name, fn, dtype, constexprs, num_warps, num_stages, arch, fp32_ptrs, mask_ptrs) -> CompileResult:
    src = ASTSource(fn=fn, signature=_signature(fn, dtype, constexprs, fp32_ptrs, mask_ptrs),
                    constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items()})
    try:
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                  options={"num_warps": num_warps, "num_stages": num_stages})
    except Exception as err:  # the report names the failure instead of stopping at the first one
        return CompileResult(name, None, None, None, f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
    regs, spills = _ptxas_usage(compiled.asm["ptx"], arch)
    return CompileResult(name, regs, spills, compiled.metadata.shared)


def slot_attention_jobs(arch: int, widths=(64, 128, 256)):
    """Forward and backward at B*T = 1536, K = 7, N = 196 for each width and dtype, at the default launch."""
    fp32_ptrs = {"u32_ptr", "den_ptr", "ws_acc_ptr", "ws_den_ptr", "ws_dq_ptr", "dq_ptr"}
    masks = {"slot_mask_ptr", "input_mask_ptr"}
    for dtype, D in ((d, w) for d in ("bf16", "fp32") for w in widths):
        fp32 = dtype == "fp32"
        launch = sa.choose_launch(1536, 196, D, D, torch.device("cpu"), fp32=fp32)
        block_d = max(16, triton.next_power_of_2(D))
        common = dict(HAS_SLOT_MASK=True, HAS_INPUT_MASK=True, FINALIZE=True, BLOCK_K=16, BLOCK_DK=block_d,
                      BLOCK_DV=block_d, PRECISION="ieee" if fp32 else "tf32")
        yield compile_kernel(f"slot_attention fwd {dtype} D={D} block_n={launch.block_n_fwd} warps={launch.warps_fwd}",
                             sa._slot_attention_fwd_kernel, dtype,
                             {**common, "BLOCK_N": launch.block_n_fwd, "STORE_U32": not fp32}, launch.warps_fwd,
                             launch.num_stages, arch, fp32_ptrs, masks)
        yield compile_kernel(f"slot_attention bwd {dtype} D={D} block_n={launch.block_n_bwd} warps={launch.warps_bwd}",
                             sa._slot_attention_bwd_kernel, dtype,
                             {**common, "BLOCK_N": launch.block_n_bwd, "HAS_DATTN": True}, launch.warps_bwd,
                             launch.num_stages, arch, {*fp32_ptrs, "dout_ptr", "dattn_ptr"} if fp32 else fp32_ptrs,
                             masks)


def predictor_attention_jobs(arch: int, sizes=((112, 8), (112, 16), (112, 64), (24, 8))):
    """Forward and backward for each (L, head dim) and dtype, at the default launch."""
    for dtype, (L, E) in ((d, s) for d in ("bf16", "fp32") for s in sizes):
        fp32 = dtype == "fp32"
        launch = pa.choose_launch(L, E, fp32=fp32)
        common = dict(HAS_MASK=True, BLOCK_E=max(16, triton.next_power_of_2(E)), PRECISION="ieee" if fp32 else "tf32")
        yield compile_kernel(f"predictor_attention fwd {dtype} L={L} E={E} block_m={launch.block_m} "
                             f"block_n={launch.block_n} warps={launch.warps_fwd}",
                             pa._predictor_attention_fwd_kernel, dtype,
                             {**common, "BLOCK_M": launch.block_m, "BLOCK_N": launch.block_n}, launch.warps_fwd,
                             launch.num_stages, arch, {"lse_ptr"}, {"mask_ptr"})
        yield compile_kernel(f"predictor_attention bwd {dtype} L={L} E={E} block={launch.block_bwd} "
                             f"warps={launch.warps_bwd}",
                             pa._predictor_attention_bwd_kernel, dtype, {**common, "BLOCK": launch.block_bwd},
                             launch.warps_bwd, launch.num_stages, arch, {"lse_ptr"}, {"mask_ptr"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=int, default=90, help="CUDA compute capability x 10 (90 = H100/H200, 80 = A100)")
    p.add_argument("--quick", action="store_true", help="only the target shapes (slot D=128, predictor E=8/64)")
    p.add_argument("--strict", action="store_true", help="exit 1 on a compile error")
    p.add_argument("--no-spills", action="store_true", help="exit 1 on a compile error or any register spill")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1 is set: interpreted kernels cannot be compiled; run `python -m "
              "cjepa_kernels.compile_report`")
        return 2
    if args.quick:
        jobs = [*slot_attention_jobs(args.arch, widths=(128,)),
                *predictor_attention_jobs(args.arch, sizes=((112, 8), (112, 64)))]
    else:
        jobs = [*slot_attention_jobs(args.arch), *predictor_attention_jobs(args.arch)]
    print(f"triton {triton.__version__}, target sm_{args.arch}")
    errors = spills = 0
    for r in jobs:
        if r.error:
            print(f"  {r.name}: COMPILE ERROR {r.error}")
            errors += 1
            continue
        print(f"  {r.name}: registers={r.registers} spill_bytes={r.spill_bytes} shared_bytes={r.shared_bytes}")
        spills += bool(r.spill_bytes)
    print(f"{len(jobs)} kernels: {errors} compile errors, {spills} with register spills")
    if errors and (args.strict or args.no_spills):
        return 1
    return 1 if (args.no_spills and spills) else 0


if __name__ == "__main__":
    sys.exit(main())
