"""Test setup shared by every test.

Triton kernels run natively on a GPU and under the Triton interpreter on CPU. The interpreter must be switched on
before anything imports triton (torch.compile included), so it is set here, at the very top of the root conftest,
when no CUDA device is visible.
"""

import os
import shutil

# One intra-op thread per test process: tests use tiny tensors, and several test processes (DDP ranks, CLI
# subprocesses, DataLoader workers) share the cores; OpenMP threads spinning against each other made small ops
# 10-100x slower on a 2-core machine. Subprocesses inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (importing torch does not import triton, so the switch below is still in time)

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # kernels run on CPU tensors, slowly: tests keep shapes tiny
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed caches its accelerator at import
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless pygame rendering (Push-T)

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


def _no_namespaces() -> str:
    """Why the namespaced nodes of cluster/local_slurm.sh cannot exist here ("" when they can)."""
    import subprocess
    from pathlib import Path

    if os.geteuid() != 0:
        return "network namespaces need root"
    script = Path(__file__).resolve().parents[1] / "cluster" / "local_slurm.sh"
    res = subprocess.run(["bash", str(script), "netns-ok"], capture_output=True, text=True, timeout=60)
    return "" if res.returncode == 0 else (res.stdout + res.stderr).strip()


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    has_slurm = shutil.which("sinfo") is not None
    no_namespaces = None  # asked once, only when multinode tests were collected
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if "slurm" in item.keywords and not has_slurm:
            item.add_marker(pytest.mark.skip(reason="no SLURM here (sinfo not found)"))
        if "multinode" in item.keywords and has_slurm:
            no_namespaces = _no_namespaces() if no_namespaces is None else no_namespaces
            if no_namespaces:
                item.add_marker(pytest.mark.skip(reason=f"no namespaced SLURM nodes here: {no_namespaces}"))
