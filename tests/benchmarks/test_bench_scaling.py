"""bench_scaling with its ranks placed by srun, one per node of the namespaced local SLURM (marker multinode):
the rows say where the ranks ran, and ZeRO-2's measured per-rank memory is the ZeRO model's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.multinode]


def test_per_node_placement_writes_rows_with_the_zero_model_memory(tmp_path):
    out = tmp_path / "rows.jsonl"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_scaling.py"), "--quick", "--worlds", "2", "--engines",
           "zero2",
           "--placement", "per-node", "--partition", "debug", "--write", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["engine"], r["world"],
             r["placement"]) for r in rows} == {("ddp", 2, "per-node"), ("zero2", 2, "per-node")}
    zero2 = next(r for r in rows if r["engine"] == "zero2")
    assert zero2["measured_ratio"] == pytest.approx(zero2["expected_ratio"], abs=0.01)
    assert zero2["samples_per_s"] > 0
