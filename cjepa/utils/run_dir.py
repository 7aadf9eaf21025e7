"""Run directories and metric logging.

``runs/<name>/`` gets ``config.yaml`` (fully resolved), ``git.txt`` (SHA + dirty state), ``env.txt`` (package
versions), ``tb/`` (tensorboard events), ``metrics.jsonl`` (one JSON object per logged step), ``checkpoints/``
and ``summary.json``. Only rank 0 writes.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

_PACKAGES = ("torch", "numpy", "triton", "deepspeed", "webdataset", "av", "nvidia-dali-cuda120", "nvidia-dali-cuda130", "submitit", "tensorboard")


SNAPSHOT_FILE = "SNAPSHOT.json"  # written by the launchers into a job's code snapshot (which is no git checkout)


def git_info(cwd: Optional[Path] = None) -> dict[str, str]:
    here = cwd or Path(__file__).resolve().parents[2]
    if (here / SNAPSHOT_FILE).is_file():  # a code snapshot: the state it was taken from
        snap = json.loads((here / SNAPSHOT_FILE).read_text())
        return {"sha": snap.get("sha", "unknown"), "dirty": snap.get("dirty", "unknown")}

    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    sha = run("rev-parse", "HEAD")
    return {"sha": sha or "unknown", "dirty": run("status", "--porcelain", "--untracked-files=no") != "" if sha else "unknown"}


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    out["cuda"] = torch.version.cuda or "none"
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def prepare_run_dir(run_dir: Path, config_yaml: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml)
    g = git_info()
    (run_dir / "git.txt").write_text(f"sha: {g['sha']}\ndirty: {g['dirty']}\n")
    (run_dir / "env.txt").write_text("".join(f"{k}: {v}\n" for k, v in package_versions().items()))


class MetricsLogger:
    """metrics.jsonl + tensorboard scalars/figures on rank 0; a no-op elsewhere."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.run_dir = run_dir
        self._tb = None
        self._jsonl = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tb"))
            self._jsonl = open(run_dir / "metrics.jsonl", "a")

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        self._jsonl.flush()

    def curve(self, tag: str, values: list[float], title: str = "", baseline: Optional[list[float]] = None) -> None:
        """A per-index curve (e.g. error vs rollout step): scalars indexed by position, plus a figure."""
        if not self.enabled:
            return
        for i, v in enumerate(values):
            self._tb.add_scalar(tag, v, i + 1)
        if baseline is not None:
            for i, v in enumerate(baseline):
                self._tb.add_scalar(tag + "_baseline", v, i + 1)
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(range(1, len(values) + 1), values, marker="o", label="predictor")
        if baseline is not None:
            ax.plot(range(1, len(baseline) + 1), baseline, marker="x", label="copy last frame")
        ax.set_xlabel("rollout step")
        ax.set_ylabel("MSE")
        ax.set_title(title or tag)
        ax.legend()
        fig.tight_layout()
        self._tb.add_figure(tag + "_plot", fig, 0)
        plt.close(fig)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
