"""Shared benchmark machinery: timing with spread, provenance, JSONL rows, ratio tables.

Every benchmark checks that the providers agree before it times anything, times each provider with warm-up
excluded (median, p20, p80 over repeats), prints a table of ratios against the reference provider, and can
append JSONL rows (device name, versions, git SHA, timestamp) to ``benchmarks/results/``.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python benchmarks/bench_x.py` from anywhere


def ensure_kernels_import_name() -> None:
    """Make ``cjepa_kernels`` importable from a checkout that was never pip-installed (a bare GPU machine).

    setup.py installs the ``kernels/`` folder under the import name ``cjepa_kernels``; without an install that name
    does not exist. A link named ``cjepa_kernels`` to the folder, first on ``sys.path`` and on ``PYTHONPATH`` (for
    the subprocesses the benchmarks and the acceptance command start), gives the same imports as an install."""
    import importlib.util
    import os
    import tempfile

    if importlib.util.find_spec("cjepa_kernels") is not None:
        return
    link_dir = Path(tempfile.mkdtemp(prefix="cjepa-import-names-"))
    (link_dir / "cjepa_kernels").symlink_to(ROOT / "kernels", target_is_directory=True)
    sys.path.insert(0, str(link_dir))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(link_dir), str(ROOT), os.environ.get("PYTHONPATH")) if p)


ensure_kernels_import_name()

from cjepa.utils.report import table  # noqa: E402
from cjepa.utils.run_dir import git_info, package_versions  # noqa: E402


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    repeats: int
    samples_ms: list[float] = field(default_factory=list, repr=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], Any], device: torch.device, *, warmup: int = 3, repeats: int = 20, min_time_s: float = 0.0
) -> Timing:
    """Wall time of fn() per call. CUDA: events around each call after synchronising; CPU: perf_counter."""
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    t_start = time.perf_counter()
    while len(samples) < repeats or (time.perf_counter() - t_start) < min_time_s:
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            samples.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1e3)
        if len(samples) >= 10 * repeats:
            break
    q = statistics.quantiles(samples, n=10) if len(samples) >= 2 else [samples[0]] * 9
    return Timing(statistics.median(samples), q[1], q[7], len(samples), samples)


def peak_memory(fn: Callable[[], Any], device: torch.device) -> Optional[int]:
    """Peak bytes allocated during fn() (CUDA only; None on CPU, where the allocator keeps no such counter)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict[str, Any]:
    return {"device": device_name(device), "git_sha": git_info()["sha"], "versions": package_versions(),
            "timestamp": time.time()}


def record_provenance(benchmark: str, script: str, argv: list[str]) -> dict[str, Any]:
    """Provenance of the rows a recorder script writes from finished runs: the benchmark name, git SHA and whether
    the tree was dirty, the machine, the UTC date, and the command line that wrote them."""
    g = git_info(ROOT)
    return {
        "benchmark": benchmark, "git_sha": g["sha"], "git_dirty": g["dirty"],
        "machine": f"{platform.node()} {platform.machine()} ({os.cpu_count()} cpus)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": f"python {script} " + " ".join(shlex.quote(x) for x in argv),
    }


def write_rows(rows: list[dict[str, Any]], device: torch.device, name: str, out: Optional[str] = None) -> Path:
    """Append rows (each merged with provenance) to benchmarks/results/<device>_<yyyymmdd>.jsonl (or `out`)."""
    prov = provenance(device)
    tag = "".join(c if c.isalnum() else "_" for c in prov["device"].split(" (")[0]).strip("_").lower()
    path = Path(out) if out else ROOT / "benchmarks" / "results" / f"{tag}_{time.strftime('%Y%m%d')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in rows:
            fh.write(json.dumps({"benchmark": name, **r, **prov}) + "\n")
    return path


def timing_row(t: Timing) -> dict[str, float]:
    d = asdict(t)
    d.pop("samples_ms")
    return d


def ratio_table(results: dict[str, Timing], reference: str, unit_per_call: Optional[float] = None,
                unit_name: str = "") -> str:
    """Rows: provider, median/p20/p80 ms, speedup vs reference (median ratio; p80/p20 bounds), optional throughput."""
    ref = results[reference]
    rows = []
    for name, t in results.items():
        spread = f"{ref.p20_ms / t.p80_ms:.2f}-{ref.p80_ms / t.p20_ms:.2f}"
        row = [name, t.median_ms, t.p20_ms, t.p80_ms, ref.median_ms / t.median_ms, spread]
        if unit_per_call is not None:
            row.append(unit_per_call / (t.median_ms / 1e3))
        rows.append(row)
    headers = ["provider", "median ms", "p20 ms", "p80 ms", f"speedup vs {reference}", "speedup range"]
    if unit_per_call is not None:
        headers.append(unit_name)
    return table(rows, headers)


def zero_expected_bytes(stage: int, numel: int, world: int, *, param_bytes: float, grad_bytes: float,
                        optim_bytes: float) -> dict[str, float]:
    """Per-rank model-state bytes in the ZeRO paper's model (Rajbhandari et al. 2020, section 5, figure 1).

    With Ψ parameters, N ranks, p / g bytes per parameter and gradient element and K bytes of optimizer state per
    parameter: stage 0 (DDP) keeps (p + g + K)Ψ; stage 1 (P_os) (p + g)Ψ + KΨ/N; stage 2 (P_os+g)
    pΨ + (g + K)Ψ/N; stage 3 (P_os+g+p) (p + g + K)Ψ/N. The paper's mixed-precision case is p = g = 2, K = 12.
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage {stage} is not 0-3")
    n = float(world)
    params = numel * param_bytes / (n if stage >= 3 else 1)
    grads = numel * grad_bytes / (n if stage >= 2 else 1)
    optim = numel * optim_bytes / (n if stage >= 1 else 1)
    return {"params": params, "grads": grads, "optim": optim, "total": params + grads + optim}


def fill_freed_heap(byte: int, blocks: int = 64, size: int = 1 << 16) -> None:
    """Fill freed heap memory with ``byte``: blocks are allocated, written and freed, so the next allocations of
    whatever runs next reuse memory holding that byte instead of what the process left there."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    ptrs = [libc.malloc(size) for _ in range(blocks)]
    for ptr in ptrs:
        ctypes.memset(ptr, byte, size)
    for ptr in ptrs:
        libc.free(ptr)
