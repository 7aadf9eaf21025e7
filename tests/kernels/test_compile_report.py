"""The kernels compile for the GPU they are designed for (sm_90), checked on any machine.

The interpreter tests check what the kernels compute but never run Triton's GPU lowering; this runs it ahead of
time through ``python -m cjepa_kernels.compile_report`` (in a subprocess: the interpreter switch of this test process
must not reach it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

HAS_NVIDIA_BACKEND = importlib.util.find_spec("triton") is not None and importlib.util.find_spec(
    "triton.backends.nvidia"
) is not None


@pytest.mark.skipif(not HAS_NVIDIA_BACKEND, reason="triton with its NVIDIA backend is not installed")
def test_kernels_compile_for_hopper():
    """Forward and backward of both kernels, at the launch configurations chosen for the target shapes, lower to
    sm_90 machine code without errors; the report lists registers and spills per kernel."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "cjepa_kernels.compile_report", "--arch", "90", "--quick", "--strict"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"compile report failed (rc={out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}"
    assert "0 compile errors" in out.stdout, out.stdout
    assert out.stdout.count("registers=") == 12, out.stdout  # 2 kernels x fwd/bwd x (bf16, fp32) x target shapes
