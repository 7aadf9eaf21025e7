"""benchmarks/compile_rows.py: the compile report's register counts as result rows with provenance."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from benchmarks import figures
from tests.helpers import REPO

HAS_NVIDIA_BACKEND = importlib.util.find_spec("triton") is not None and importlib.util.find_spec(
    "triton.backends.nvidia"
) is not None


@pytest.mark.skipif(not HAS_NVIDIA_BACKEND, reason="triton with its NVIDIA backend is not installed")
def test_rows_per_kernel_with_provenance(tmp_path):
    """In a subprocess, as the report: this test process runs under the Triton interpreter switch."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = tmp_path / "rows.jsonl"
    run = subprocess.run([sys.executable, "benchmarks/compile_rows.py", "--quick", "--out", str(out)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr[-3000:]}"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12, rows  # 2 kernels x fwd/bwd x (bf16, fp32) x the target shapes
    for r in rows:
        assert r["benchmark"] == "compile_report" and not r["error"], r
        assert isinstance(r["registers"], int) and 0 < r["registers"] <= 255, r
        assert r["spill_bytes"] == 0 and r["arch"] == 90, r
        assert figures.missing_provenance(r) == [], r
    assert f"{len(rows)} kernels: 0 compile errors" in run.stdout
