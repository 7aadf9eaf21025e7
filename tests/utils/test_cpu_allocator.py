"""train.cpu_allocator: a training step that reuses the pages of the previous one (glibc only)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from cjepa.utils.cpu_allocator import tune_cpu_allocator

# A few 4 MiB activations freed and allocated again every step, like a convolution stack's training step. The
# settings are process-wide, so each mode runs in its own interpreter.
STEPS = """
import json, resource, sys, torch
from cjepa.utils.cpu_allocator import tune_cpu_allocator
line = tune_cpu_allocator(sys.argv[1])
torch.manual_seed(0)
net = torch.nn.Sequential(*[m for _ in range(3) for m in (torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU())])
x = torch.randn(16, 16, 64, 64)  # (B, C, H, W): 4 MiB per activation
def step():
    net(x).square().mean().backward()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step(); step()
f0 = faults()
for _ in range(8):
    step()
print(json.dumps({"line": line, "faults_per_step": (faults() - f0) / 8}))
"""


def run_steps(mode: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt; other C libraries keep theirs")
def test_tuned_steps_reuse_the_previous_steps_pages():
    system, tuned = run_steps("system"), run_steps("tuned")
    assert system["line"] == "system" and tuned["line"].startswith("tuned (glibc")
    # glibc's own thresholds hand the activations back to the kernel: thousands of page faults per step
    assert system["faults_per_step"] > 1000, system
    assert tuned["faults_per_step"] < 0.25 * system["faults_per_step"], (system, tuned)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="train.cpu_allocator='jemalloc'"):
        tune_cpu_allocator("jemalloc")


def test_system_leaves_malloc_alone():
    assert tune_cpu_allocator("system") == "system"
