"""GPU acceptance: one command that says whether this GPU meets the performance targets, in one table.

    python -m benchmarks.gpu_acceptance [--reference-src PATH] [--quick] [--out FILE.jsonl] [--timeout 480]
    python -m benchmarks.gpu_acceptance --cpu --quick      # CI: the same stages at tiny sizes, no targets

Stages, in this order (each one's time is estimated first; one that would overrun ``--timeout`` is reported as
"skipped: budget" and not started):

1. ``tests``: pytest in subprocesses: first the kernel parity tests at the realistic shapes
   (``tests/kernels/test_realistic_shapes.py``) and the other ``gpu``-marked tests, then the kernel parity suite
   (``tests/kernels``, with its GPU shape tier) in the time left to the stage. With ``--cpu`` the gpu-marked
   tests skip and the parity suite runs at tiny shapes under the Triton interpreter.
2. ``slot_attention``: ``bench_slot_attention.bench_shape`` at (B*T, K, N, D) = (1536, 7, 196, 128), bf16,
   forward + backward. Targets: Triton >= 2x torch eager and >= 1.2x torch.compile of the reference.
3. ``predictor_step``: one training step of the CLEVRER predictor (B=256; forward, loss, backward, AdamW) with
   ``bench_predictor``'s pieces: ours (SDPA, bf16 autocast, torch.compile) against the original module in fp32
   eager (``--reference-src``, a galilai-group/cjepa checkout, checked to match first). Targets: >= 4x the
   original, and >= 35 % MFU: analytic model FLOPs per step (:func:`predictor_step_flops`) / (step time x the
   GPU's peak dense bf16 FLOP/s, :data:`PEAK_BF16`).
4. ``decode``: ``bench_decode.py --quick`` in a subprocess. Target: DALI NVDEC >= 10x one PyAV worker in
   delivered frames/s on the same shards.
5. ``predictor_attention`` and ``encoder``: measured and reported, no target (Triton predictor attention vs SDPA
   and eager; the VideoSAUR training step and slot extraction per backend).

Every benchmark checks its providers against the torch reference before timing. A stage that needs a package
this machine lacks (PyAV, DALI, einops for the original module, ...) gives a "not installed: NAME" row; a stage
that fails gives an "error: ..." row and the others still run. Verdicts: PASS / FAIL against a target, "info"
where there is none, "cpu: no target" with ``--cpu``. Rows go to JSONL with provenance (GPU name, driver, torch /
triton / CUDA versions, git SHA, timestamp); what the benchmarks print goes to a ``.log`` file beside it.
Exit status: 0 when no row is FAIL or error, else 1; 2 when the run cannot start.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _p in (str(BENCH), str(ROOT)):  # the bench scripts import `common` as a top-level module, and cjepa / tests
    if _p not in sys.path:
        sys.path.insert(0, _p)

import torch  # noqa: E402
from common import device_name, time_fn, write_rows  # noqa: E402

from cjepa.utils.report import table  # noqa: E402

BUDGET_S = 480.0  # the whole run, 8 minutes
# Peak dense bf16 tensor-core FLOP/s (no sparsity), by GPU name: (name fragments that must all appear, FLOP/s).
PEAK_BF16 = [
    (("H100", "PCIE"), 756e12),
    (("H100", "SXM"), 989e12),
    (("H100", "HBM3"), 989e12),  # the SXM board reports itself as "NVIDIA H100 80GB HBM3"
    (("H200",), 989e12),
    (("A100",), 312e12),
]
# Estimated seconds per stage (GPU, --cpu --quick): a stage starts only if it fits in what is left of the budget.
ESTIMATE_S = {
    "tests": (150, 30),
    "slot_attention": (45, 35),
    "predictor_step": (90, 15),
    "decode": (90, 20),
    "predictor_attention": (45, 30),
    "encoder": (60, 20),
}
STAGES = list(ESTIMATE_S)
TARGETS = {"slot_vs_eager": 2.0, "slot_vs_compile": 1.2, "step_vs_original": 4.0, "mfu": 0.35, "nvdec_vs_pyav": 10.0}
# Packages each stage needs beyond torch/triton (import name -> what a missing-package row calls it)
DECODE_NEEDS = {"av": "av (PyAV)", "nvidia.dali": "nvidia-dali"}


@dataclass
class Row:
    stage: str
    check: str
    measured: str  # the number as shown, with the provider it belongs to
    target: str
    # PASS / FAIL / info / cpu: no target / not installed: X / skipped: budget / needs --reference-src / error: ...
    verdict: str
    value: Optional[float] = None
    detail: dict[str, Any] = field(default_factory=dict)


class Ctx(SimpleNamespace):
    """What the stages share: device, mode, options, the log and the budget clock."""


# ------------------------------------------------------------------------------------------------ helpers


def peak_bf16_flops(gpu_name: str) -> Optional[float]:
    """Peak dense bf16 FLOP/s of a GPU from its name (torch.cuda.get_device_name), None when unknown."""
    name = gpu_name.upper()
    for frags, peak in PEAK_BF16:
        if all(f in name for f in frags):
            return peak
    return None


def predictor_step_flops(batch: int, num_slots: int, frames: int, dim: int, depth: int, heads: int, head_dim: int,
                         mlp: int) -> float:
    """Model FLOPs of one predictor training step (forward + backward = 3x the forward's matmul FLOPs).

    Forward, per sample, with L = frames x num_slots tokens and I = heads x head_dim: the id projection of the
    first history frame (2 S D^2); per layer the packed q/k/v projection (2 L D 3I), scores and weighted sum
    (2 x 2 H L^2 E), the output projection (2 L I D) and the MLP (2 x 2 L D mlp); the output projection (2 L D^2).
    LayerNorms, softmax, GELU, the loss and the optimizer are not counted (the usual MFU convention).
    """
    L, inner = frames * num_slots, heads * head_dim
    layer = 2 * L * dim * 3 * inner + 4 * heads * L * L * head_dim + 2 * L * inner * dim + 4 * L * dim * mlp
    forward = 2 * num_slots * dim * dim + depth * layer + 2 * L * dim * dim
    return 3.0 * batch * forward


def missing_packages(names: dict[str, str]) -> list[str]:
    """The packages of ``names`` (import name -> label) that do not import here."""
    out = []
    for mod, label in names.items():
        try:
            importlib.import_module(mod)
        except ImportError:
            out.append(label)
    return out


def gpu_provenance(device: torch.device) -> dict[str, Any]:
    """GPU name, NVIDIA driver, torch / triton / CUDA versions (besides common.provenance's git SHA and time)."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    driver = None
    if device.type == "cuda" and shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True,
                                 text=True, timeout=30)
            driver = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            driver = None
    return {"gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "driver": driver,
            "torch": torch.__version__, "triton": triton_version, "cuda": torch.version.cuda}


def judge(ctx: Ctx, value: Optional[float], target: Optional[float]) -> str:
    """PASS / FAIL against a target (value >= target), 'info' without one; '--cpu' runs have no targets."""
    if ctx.cpu:
        return "cpu: no target"
    if target is None:
        return "info"
    if value is None:
        return "FAIL"
    return "PASS" if value >= target else "FAIL"


def _fmt_ratio(x: Optional[float], provider: str = "") -> str:
    if x is None:
        return "n/a"
    return f"{x:.2f}x" + (f" ({provider})" if provider else "")


def _median_ms(rows: list[dict], provider: str) -> Optional[float]:
    for r in rows:
        if r["provider"] == provider:
            return r["median_ms"]
    return None


# ------------------------------------------------------------------------------------------------ stages


REALISTIC = "tests/kernels/test_realistic_shapes.py"
PARITY = ["tests/kernels/test_slot_attention.py", "tests/kernels/test_predictor_attention.py"]
GPU_MARKED = ["tests/models/test_object_encoder.py", "tests/data/test_dali.py"]


def _pytest(ctx: Ctx, files: list[str], timeout: float) -> tuple[Optional[dict[str, dict[str, int]]], int]:
    """pytest -m 'gpu or interp' over files in a subprocess: outcome counts per test file (from its JUnit XML) and
    the exit status; None when it ran out of time."""
    xml = Path(ctx.tmp) / f"pytest-{len(list(Path(ctx.tmp).glob('pytest-*.xml')))}.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu or interp", f"--junitxml={xml}",
           *files]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the tests' conftest decides
    ctx.log(f"$ {' '.join(cmd)}   (timeout {timeout:.0f} s)")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        ctx.log(err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or ""))
        return None, -1
    ctx.log(proc.stdout + proc.stderr)
    per_file: dict[str, dict[str, int]] = {}
    if xml.is_file():
        for case in ET.parse(xml).getroot().iter("testcase"):
            kind = "passed"
            for child, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
                if case.find(child) is not None:
                    kind = name
                    break
            counts = per_file.setdefault(case.get("classname", "").replace(".", "/") + ".py", {})
            counts[kind] = counts.get(kind, 0) + 1
    return per_file, proc.returncode


def _tests_row(ctx: Ctx, check: str, per_file, code: int, files: list[str], gpu_only: bool, note: str = "") -> Row:
    """One row over `files`: PASS when something passed and nothing failed (on a GPU nothing may skip either)."""
    if per_file is None:
        return Row("tests", check, "stopped: out of time", "all pass", "skipped: budget", detail={"files": files})
    o: dict[str, int] = {}
    for f, counts in per_file.items():
        if any(f.endswith(x) or f.startswith(x.rstrip("/") + "/") for x in files):
            for k, n in counts.items():
                o[k] = o.get(k, 0) + n
    measured = ", ".join(f"{n} {k}" for k, n in sorted(o.items())) or f"nothing ran (pytest exit {code})"
    if o.get("failed") or o.get("error") or code not in (0, 1, 5):
        verdict = "FAIL"
    elif ctx.cpu and gpu_only:
        verdict = "cpu: no target"  # gpu-marked: they skip without CUDA
    elif not o.get("passed") or (not ctx.cpu and gpu_only and o.get("skipped")):
        verdict = "FAIL"  # on a GPU every gpu-marked test must run
    else:
        verdict = "PASS"
    return Row("tests", check, measured + note, "all pass", verdict,
               detail={"outcomes": o, "files": files, "pytest_exit": code})


def stage_tests(ctx: Ctx) -> list[Row]:
    """Two pytest runs: the realistic-shape parity and gpu-marked tests first, then the kernel parity suite
    (tiny shapes under the interpreter on CPU; on a GPU also its GPU shape tier) with the time left to the stage."""
    gpu_files, left_out = [], []
    for f in GPU_MARKED:
        lacking = missing_packages({"nvidia.dali": "nvidia-dali", "av": "av (PyAV)",
                                    "webdataset": "webdataset"}) if "dali" in f else []
        if lacking:
            left_out.append(f"{f} (not installed: {', '.join(lacking)})")
        else:
            gpu_files.append(f)
    first, code = _pytest(ctx, [REALISTIC, *gpu_files], ctx.time_left(later=True))
    note = f"; left out: {'; '.join(left_out)}" if left_out else ""
    shapes = "slot attn 1536x7x196x128, pred attn 256x16x112xE, E=8,16,32,64"
    rows = [_tests_row(ctx, f"kernel parity at realistic shapes ({shapes})", first, code, [REALISTIC], True),
            _tests_row(ctx, "gpu-marked tests (encoder on CUDA, DALI NVDEC)", first, code, gpu_files, True, note)]
    rows[0].detail["left_out"] = rows[1].detail["left_out"] = left_out
    second, code = _pytest(ctx, PARITY, ctx.time_left(later=True))
    rows.append(_tests_row(ctx, "kernel parity suite (tests/kernels, every shape tier)", second, code, PARITY, False))
    return rows


def stage_slot_attention(ctx: Ctx) -> list[Row]:
    import bench_slot_attention as bench

    shape, dtype = ((16, 7, 196, 128), "fp32") if ctx.cpu else ((1536, 7, 196, 128), "bf16")
    rows, _ = bench.bench_shape(shape, dtype, ["full"], ctx.device, ctx.repeats)
    what = f"slot attention fwd+bwd {'x'.join(map(str, shape))} {dtype}"
    return slot_attention_rows(ctx, rows, what, {"shape": list(shape), "dtype": dtype})


def slot_attention_rows(ctx: Ctx, rows: list[dict], what: str, detail: dict) -> list[Row]:
    """Verdict rows from bench_slot_attention's rows: Triton against eager and compile (no Triton timing: n/a)."""
    eager, comp, tri = (_median_ms(rows, p) for p in ("torch", "compile", "triton"))
    best, best_ms = ("triton", tri) if tri is not None else ("compile", comp)
    vs_eager, vs_compile = eager / best_ms, comp / best_ms
    detail = {**detail, "median_ms": {r["provider"]: r["median_ms"] for r in rows},
              "gb_per_s": {r["provider"]: r.get("gb_per_s") for r in rows}}
    out = [Row("slot_attention", f"{what}: triton vs torch eager", _fmt_ratio(vs_eager, best),
               f">= {TARGETS['slot_vs_eager']}x",
               judge(ctx, vs_eager if best == "triton" else None, TARGETS["slot_vs_eager"]), vs_eager, detail)]
    if best == "triton":
        out.append(Row("slot_attention", f"{what}: triton vs torch.compile", _fmt_ratio(vs_compile, best),
                       f">= {TARGETS['slot_vs_compile']}x", judge(ctx, vs_compile, TARGETS["slot_vs_compile"]),
                       vs_compile, detail))
    else:  # no Triton timing (CPU): compile against itself would say nothing
        out.append(Row("slot_attention", f"{what}: triton vs torch.compile", "n/a (no triton timing on cpu)",
                       f">= {TARGETS['slot_vs_compile']}x", judge(ctx, None, TARGETS["slot_vs_compile"]), None, detail))
    return out


def stage_predictor_attention(ctx: Ctx) -> list[Row]:
    import bench_predictor_attention as bench

    shape, dtype = ((4, 16, 112, 8), "fp32") if ctx.cpu else ((256, 16, 112, 8), "bf16")
    rows, _ = bench.bench_shape(shape, dtype, ["full"], ctx.device, ctx.repeats, False)
    ms = {r["provider"]: r["median_ms"] for r in rows}
    best = "triton" if "triton" in ms else min(("compile", "sdpa"), key=ms.get)
    what = f"predictor attention fwd+bwd {'x'.join(map(str, shape))} {dtype}"
    detail = {"shape": list(shape), "dtype": dtype, "median_ms": ms,
              "tflop_per_s": {r["provider"]: r["tflop_per_s"] for r in rows}}
    # the same two rows everywhere; without a GPU the fastest torch baseline stands in for triton (named in "measured")
    return [Row("predictor_attention", f"{what}: triton vs {label}", _fmt_ratio(ms[ref] / ms[best], best), "-",
                judge(ctx, ms[ref] / ms[best], None), ms[ref] / ms[best], detail)
            for ref, label in (("torch", "torch eager"), ("sdpa", "sdpa"))]


def stage_predictor_step(ctx: Ctx) -> list[Row]:
    """CLEVRER predictor training step: ours (SDPA, bf16, compile on GPU) against the original fp32 eager step."""
    import bench_predictor as bench

    from cjepa.masking import MaskSampler

    cfg = bench.CONFIGS["clevrer"]
    S, T_h = cfg["num_slots"], cfg["history_frames"]
    T = T_h + cfg["pred_frames"]
    batch = 4 if ctx.cpu else 256
    m = SimpleNamespace(dim=128, depth=6, heads=16, mlp=2048, dropout=0.1, num_masked=2)
    dev = ctx.device
    torch.manual_seed(0)
    slots = torch.randn(batch, T, S, m.dim, device=dev)
    masked = MaskSampler(S, m.num_masked).global_masks(0, batch).to(dev)

    def build(layout, attention):
        return bench.build_ours(cfg, layout, attention, m.dim, m.depth, m.heads, m.mlp, m.dropout).to(dev)

    def adamw(model):
        return torch.optim.AdamW(model.parameters(), lr=5e-4)

    ours_name = "ours[sdpa]" if ctx.cpu else "ours[sdpa,bf16,compile]"
    ours = build("cjepa", "sdpa")
    runner = ours if ctx.cpu else torch.compile(ours)
    steps = {ours_name: bench.make_step(runner, adamw(ours), slots, masked, T_h, None if ctx.cpu else torch.bfloat16,
                                        False)}
    base_row: Optional[Row] = None
    target = f">= {TARGETS['step_vs_original']}x"
    check = f"predictor train step B={batch}: {ours_name} vs original fp32 eager"
    if ctx.reference_src:
        try:
            Original = bench.load_original(ctx.reference_src)
            ref = build("reference", "torch")
            orig = bench.check_original_matches(Original, ref, cfg, m, dev)  # SystemExit when they differ
            steps["original"] = bench.make_step(orig, adamw(orig), slots, masked, T_h, None, True)
        except ImportError as err:
            base_row = Row("predictor_step", check, "n/a", target, f"not installed: {err.name or err}")
        except SystemExit as err:  # no checkout there, or the original does not match our reference layout
            base_row = Row("predictor_step", check, "n/a", target, f"error: {err}"[:160])
    else:
        base_row = Row("predictor_step", check, "n/a", target, "needs --reference-src")
    ref = build("reference", "torch")  # our copy of the original's layout and numerics: always timed, for information
    steps["reference fp32 eager"] = bench.make_step(ref, adamw(ref), slots, masked, T_h, None, False)
    ms = {}
    for name, fn in steps.items():
        ms[name] = time_fn(fn, dev, warmup=3, repeats=ctx.repeats,
                           min_time_s=0.2 if dev.type == "cuda" else 0).median_ms
    detail = {"batch": batch, "median_ms": ms, "samples_per_s": {k: batch / (v / 1e3) for k, v in ms.items()}}
    rows = []
    if base_row is None:
        r = ms["original"] / ms[ours_name]
        base_row = Row("predictor_step", check, _fmt_ratio(r), target, judge(ctx, r, TARGETS["step_vs_original"]), r,
                       detail)
    rows.append(base_row)
    r = ms["reference fp32 eager"] / ms[ours_name]
    rows.append(Row("predictor_step", f"predictor train step B={batch}: {ours_name} vs our reference layout fp32 eager",
                    _fmt_ratio(r), "-", judge(ctx, r, None), r, detail))
    flops = predictor_step_flops(batch, S, T, m.dim, m.depth, m.heads, m.dim // m.heads, m.mlp)
    rows.append(mfu_row(ctx, f"predictor train step B={batch}: {ours_name} MFU (bf16 peak)", flops, ms[ours_name],
                        detail))
    return rows


def mfu_row(ctx: Ctx, check: str, flops: float, step_ms: float, detail: dict) -> Row:
    """Model FLOPs per step / (step time x the GPU's peak dense bf16 FLOP/s); 'MFU n/a' on a GPU not in PEAK_BF16."""
    achieved = flops / (step_ms / 1e3)
    peak = None if ctx.cpu else peak_bf16_flops(ctx.gpu_name)
    detail = {**detail, "model_flops_per_step": flops, "achieved_flop_per_s": achieved, "peak_bf16_flop_per_s": peak}
    target = f">= {TARGETS['mfu']:.0%}"
    if ctx.cpu:
        return Row("predictor_step", check, f"{achieved / 1e9:.1f} GFLOP/s", target, judge(ctx, None, None), None,
                   detail)
    if peak is None:
        return Row("predictor_step", check, f"{achieved / 1e12:.1f} TFLOP/s on {ctx.gpu_name}", target, "MFU n/a", None,
                   detail)
    mfu = achieved / peak
    return Row("predictor_step", check, f"{mfu:.1%} ({achieved / 1e12:.0f} of {peak / 1e12:.0f} TFLOP/s)", target,
               judge(ctx, mfu, TARGETS["mfu"]), mfu, detail)


def stage_encoder(ctx: Ctx) -> list[Row]:
    import bench_encoder as bench

    if ctx.cpu:
        preset, args = "small", SimpleNamespace(repeats=2, warmup=1, bf16=False, batch=2, frames=2, videos=1,
                                                video_frames=3)
    else:
        preset, args = "clevrer", SimpleNamespace(repeats=5, warmup=2, bf16=True, batch=None, frames=None,
                                                  videos=4 if ctx.quick else None, video_frames=None)
    rows = bench.bench_kind("videosaur", bench.PRESETS[preset], ctx.device, args)
    out = []
    for mode, unit in (("train_step", "clips_per_s"), ("extract", "videos_per_s")):
        ms = {r["provider"]: r["median_ms"] for r in rows if r["mode"] == mode}
        best = min(ms, key=ms.get)
        r = ms["torch"] / ms[best]
        what = "training step" if mode == "train_step" else "slot extraction"
        detail = {"preset": preset, "median_ms": ms, unit: {x["provider"]: x[unit] for x in rows if x["mode"] == mode}}
        out.append(Row("encoder", f"VideoSAUR {what} ({preset}): fastest vs torch", _fmt_ratio(r, best), "-",
                       judge(ctx, r, None), r, detail))
    return out


def stage_decode(ctx: Ctx) -> list[Row]:
    """bench_decode.py in a subprocess (it generates its shards); NVDEC frames/s against one PyAV worker."""
    check = f"decode frames/s: DALI NVDEC vs one PyAV worker (bench_decode --quick{', tiny' if ctx.cpu else ''})"
    target = f">= {TARGETS['nvdec_vs_pyav']:.0f}x"
    lacking = missing_packages(DECODE_NEEDS)
    if lacking:
        return [Row("decode", check, "n/a", target, f"not installed: {', '.join(lacking)}")]
    out = Path(ctx.tmp) / "decode.jsonl"
    cmd = [sys.executable, str(BENCH / "bench_decode.py"), "--quick", "--out", str(out)]
    if ctx.cpu:
        cmd += ["--videos", "2", "--frames", "12", "--height", "48", "--width", "64", "--image-size", "32", "--batch",
                "2",
                "--workers", "1"]
    limit = ctx.time_left(later=True)
    ctx.log(f"$ {' '.join(cmd)}   (timeout {limit:.0f} s)")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return [Row("decode", check, f"stopped after {limit:.0f} s", target, "skipped: budget")]
    ctx.log(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not out.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"bench_decode.py exited {proc.returncode}: {last}")
    fps = {r["provider"]: r["frames_per_s"] for r in map(json.loads, out.read_text().splitlines())}
    return [decode_row(ctx, check, target, fps)]


def decode_row(ctx: Ctx, check: str, target: str, fps: dict[str, float]) -> Row:
    """NVDEC frames/s over one PyAV worker's; without an NVDEC row (CPU, or DALI failed to use it) no PASS."""
    detail = {"frames_per_s": fps}
    if "dali-nvdec" in fps:
        r = fps["dali-nvdec"] / fps["cpu-1"]
        return Row("decode", check, _fmt_ratio(r, "dali-nvdec"), target, judge(ctx, r, TARGETS["nvdec_vs_pyav"]), r,
                   detail)
    # no NVDEC (CPU machine): DALI's PyAV step against the CPU loader, for information
    r = fps["dali-pyav"] / fps["cpu-1"] if "dali-pyav" in fps else None
    verdict = "cpu: no target" if ctx.cpu else "FAIL"
    return Row("decode", check, _fmt_ratio(r, "dali-pyav; no nvdec here"), target, verdict, r, detail)


STAGE_FNS: dict[str, Callable[[Ctx], list[Row]]] = {
    "tests": stage_tests,
    "slot_attention": stage_slot_attention,
    "predictor_step": stage_predictor_step,
    "decode": stage_decode,
    "predictor_attention": stage_predictor_attention,
    "encoder": stage_encoder,
}


# ------------------------------------------------------------------------------------------------ driver


def run_stage(name: str, ctx: Ctx) -> list[Row]:
    """Run one stage with its output captured to the log; failures become rows, never crashes."""
    buf = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buf):
            rows = STAGE_FNS[name](ctx)
    except ImportError as err:  # a package this machine lacks (or that cannot load)
        ctx.log(buf.getvalue() + traceback.format_exc())
        rows = [Row(name, f"{name} stage", "n/a", "-", f"not installed: {err.name or err}")]
    except (Exception, SystemExit) as err:  # bench scripts raise SystemExit when a provider disagrees
        ctx.log(buf.getvalue() + traceback.format_exc())
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        rows = [Row(name, f"{name} stage", "n/a", "-", f"error: {type(err).__name__}: {msg}"[:160])]
    else:
        ctx.log(buf.getvalue())
    wall = time.perf_counter() - t0
    for r in rows:
        r.detail.setdefault("stage_wall_s", wall)
    print(f"[{time.perf_counter() - ctx.t0:6.1f} s] {name}: {wall:.1f} s", file=sys.stderr, flush=True)
    return rows


def verdict_table(rows: list[Row]) -> str:
    return table([[r.stage, r.check, r.measured, r.target, r.verdict] for r in rows],
                 ["stage", "check", "measured", "target", "verdict"])


def failed(rows: list[Row]) -> bool:
    return any(r.verdict == "FAIL" or r.verdict.startswith("error") for r in rows)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run on CPU at tiny sizes (CI); verdicts are 'cpu: no target'")
    p.add_argument("--quick", action="store_true", help="fewer repeats (and tiny sizes with --cpu)")
    p.add_argument("--reference-src", default="",
                   help="checkout of galilai-group/cjepa: time the original predictor module")
    p.add_argument("--out", default=None,
                   help="JSONL file to append rows to (default benchmarks/results/<device>_<date>.jsonl)")
    p.add_argument("--timeout", type=float, default=BUDGET_S, help="budget in seconds for the whole run (default 480)")
    p.add_argument("--only", nargs="+", choices=STAGES, default=None, help="run only these stages")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device visible: run with --cpu (CI mode, no targets) or on a GPU machine", file=sys.stderr)
        return 2
    if not args.cpu and os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1 is set: Triton (and torch.compile's Triton code) would run in the interpreter. Unset "
              "it.",
              file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    log_lines: list[str] = []
    tmp = tempfile.TemporaryDirectory(prefix="cjepa-acceptance-")
    ctx = Ctx(cpu=args.cpu, quick=args.quick, device=device, reference_src=args.reference_src, tmp=tmp.name, t0=t0,
              budget=args.timeout, gpu_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "",
              repeats=3 if args.cpu else (10 if args.quick else 30), log=log_lines.append)
    stages = [s for s in STAGES if args.only is None or s in args.only]
    mode = 1 if args.cpu else 0

    def time_left(later: bool = False) -> float:
        """Seconds left in the budget; with ``later``, minus the estimates of the stages not yet started."""
        left = ctx.budget - (time.perf_counter() - t0)
        if later:
            left -= sum(ESTIMATE_S[s][mode] for s in stages[stages.index(ctx.current) + 1:])
        return max(1.0, left)

    ctx.time_left = time_left
    print(f"GPU acceptance on {device_name(device)}; budget {args.timeout:.0f} s; stages: {', '.join(stages)}",
          file=sys.stderr)
    rows: list[Row] = []
    for name in stages:
        ctx.current = name
        if time.perf_counter() - t0 + ESTIMATE_S[name][mode] > args.timeout:
            rows.append(Row(name, f"{name} stage", "n/a", "-", "skipped: budget",
                            detail={"estimate_s": ESTIMATE_S[name][mode], "elapsed_s": time.perf_counter() - t0}))
            continue
        rows.extend(run_stage(name, ctx))
    wall = time.perf_counter() - t0
    run_id = time.strftime("%Y%m%dT%H%M%S")
    extra = {"run_id": run_id, "mode": "cpu" if args.cpu else "gpu", "quick": args.quick, "wall_s": wall,
             **gpu_provenance(device)}
    path = write_rows([{**asdict(r), **extra} for r in rows], device, "gpu_acceptance", args.out)
    log_path = path.with_suffix(".log")
    with open(log_path, "a") as fh:
        fh.write(f"# gpu_acceptance {run_id}\n" + "\n".join(log_lines) + "\n")
    print(f"\n## GPU acceptance: {extra['gpu'] or device_name(device)}, torch {extra['torch']}, triton "
          f"{extra['triton']}, "
          f"driver {extra['driver'] or 'n/a'}  ({wall:.0f} s of a {args.timeout:.0f} s budget)")
    print(verdict_table(rows))
    print(f"\nrows appended to {path}; benchmark output in {log_path}")
    tmp.cleanup()
    return 1 if failed(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
