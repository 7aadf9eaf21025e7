"""Rollout error of finished predictor runs against copy-last, grouped by a config key, with spread over seeds.

Reads each run directory's ``summary.json`` (``final_eval``: per-step rollout MSE and copy-last MSE),
``config.yaml`` and ``git.txt``, appends one JSONL row per run (git SHA of the run, machine, date) to
``benchmarks/results/`` and prints, per value of ``--by``, the predictor / copy-last ratio per rollout step and
on average: mean over the runs and min-max.

    python benchmarks/collect_rollouts.py runs/slots_res_* --by model.residual --name demo_slots_residual
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cjepa.utils.report import table  # noqa: E402


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def run_row(run_dir: Path, by: str) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    git = dict(line.split(": ", 1) for line in (run_dir / "git.txt").read_text().splitlines() if ": " in line)
    fe = summary["final_eval"]
    ratios = [p / b for p, b in zip(fe["mse"], fe["baseline_mse"])]
    return {
        "run": run_dir.as_posix(), by: _get(cfg, by), "seed": cfg["run"]["seed"], "steps": summary["steps"],
        "rollout_mse": fe["mse"], "baseline_mse": fe["baseline_mse"], "ratio_per_step": ratios,
        "ratio_mean": (sum(fe["mse"]) / len(ratios)) / (sum(fe["baseline_mse"]) / len(ratios)),
        "git_sha": git.get("sha", "unknown"), "git_dirty": git.get("dirty", "unknown"),
        "machine": f"{platform.machine()} ({os.cpu_count()} cpus)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="run directories (each with summary.json, config.yaml, git.txt)")
    p.add_argument("--by", default="model.residual", help="config key to group runs by")
    p.add_argument("--name", default="collect_rollouts", help="benchmark name stored in each row")
    p.add_argument("--note", default="")
    p.add_argument("--out", default=None, help="JSONL to append to (default benchmarks/results/demo_<yyyymmdd>.jsonl)")
    a = p.parse_args(argv)
    rows = [{"benchmark": a.name, "note": a.note, **run_row(Path(r), a.by)} for r in a.runs]
    path = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"demo_{time.strftime('%Y%m%d')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    for value in sorted({str(r[a.by]) for r in rows}):
        group = [r for r in rows if str(r[a.by]) == value]
        n = len(group[0]["ratio_per_step"])
        body = []
        for i in range(n):
            v = [r["ratio_per_step"][i] for r in group]
            body.append([i + 1, sum(v) / len(v), min(v), max(v)])
        v = [r["ratio_mean"] for r in group]
        body.append(["mean over steps", sum(v) / len(v), min(v), max(v)])
        print(f"{a.by}={value}: {len(group)} runs (seeds {', '.join(str(r['seed']) for r in group)})")
        print(table(body, ["rollout step", "predictor / copy-last (mean)", "min", "max"]))
    print(f"rows appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
