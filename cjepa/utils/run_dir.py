"""Run directories and metric logging.

``runs/<name>/`` gets ``config.yaml`` (fully resolved), ``git.txt`` (SHA + dirty state), ``env.txt`` (package
versions), ``config_history.jsonl`` (one row per start of the run: step, checkpoint, changed keys, config, git,
versions), ``tb/`` (tensorboard events), ``metrics.jsonl`` (one JSON object per logged step), ``checkpoints/``,
``summary.json`` and ``run.lock`` (held by the process training into the directory). Only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from cjepa.config import ConfigError

LOCK_FILE = "run.lock"
HISTORY_FILE = "config_history.jsonl"

# Keys that may differ between a checkpoint's config and the config that resumes it: how long to train, how
# often to log / validate / checkpoint, where and on what the run happens and how it is launched. The engine
# layout (dist.*: DDP <-> single, another ZeRO stage or world size) is resumable because the engines convert or
# refuse their own state; kernels.* compute the same functions. Everything else (model, data, optimiser, masking,
# seeds) would either be ignored (the checkpoint's state wins) or not fit it.
RESUMABLE_KEYS = (
    "run.name", "run.out_dir", "run.device",
    "train.max_steps", "train.epochs", "train.log_every", "train.val_every", "train.ckpt_every",
    "train.keep_checkpoints", "train.resume", "train.allow_config_change", "train.compile", "train.compile_backend",
    "train.tf32", "train.cpu_allocator", "data.num_workers", "data.decode_threads",
    "dist.", "kernels.", "launch.",  # trailing dot: a section
)


class RunDirError(ConfigError):
    """The run directory cannot be used as asked (held by another process, holds a different run, ...)."""

_PACKAGES = ("torch", "numpy", "triton", "deepspeed", "webdataset", "av", "nvidia-dali-cuda120", "nvidia-dali-cuda130",
             "submitit", "tensorboard")


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
    return {"sha": sha or "unknown",
            "dirty": run("status", "--porcelain", "--untracked-files=no") != "" if sha else "unknown"}


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


def prepare_run_dir(run_dir: Path, config_yaml: str, start: Optional[dict] = None) -> None:
    """Write config.yaml, git.txt and env.txt for this start of the run, and append them (with ``start``: step,
    checkpoint, changed keys) to config_history.jsonl, so a resumed run keeps what every earlier start ran with."""
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_yaml)
    g = git_info()
    (run_dir / "git.txt").write_text(f"sha: {g['sha']}\ndirty: {g['dirty']}\n")
    versions = package_versions()
    (run_dir / "env.txt").write_text("".join(f"{k}: {v}\n" for k, v in versions.items()))
    row = {"started_at": time.time(), "host": socket.gethostname(), "pid": os.getpid(), **(start or {}),
           "git": g, "versions": versions, "config": yaml.safe_load(config_yaml)}
    with open(run_dir / HISTORY_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two config dicts (as dump_yaml writes them). Keys the old config
    does not have are left out: they were added to the code after it was written and hold their defaults."""
    a, b = _flatten(old), _flatten(new)
    return {k: (a[k], b[k]) for k in b if k in a and a[k] != b[k]}


def resumable(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def truncate_metrics(run_dir: Path, step: int) -> int:
    """Drop the rows of metrics.jsonl logged after ``step`` (by a run that went on past the checkpoint being
    resumed) and a last line cut short by a crash, so each step is logged once. Returns the rows dropped."""
    f = Path(run_dir) / "metrics.jsonl"
    if not f.is_file():
        return 0
    keep, dropped = [], 0
    for line in f.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if row.get("step", 0) <= step:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = f.with_name(f".{f.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, f)
    return dropped


class RunLock:
    """One process trains into a run directory at a time: an exclusive ``flock`` on ``run.lock``.

    The kernel releases the lock when its process dies, however it dies, so a SLURM requeue (the same job
    restarted after the previous process ended) takes it again, and a crash leaves nothing to clean up. The file
    says who holds it (pid, host, start time) for the error of the process that finds it taken.

    A run that fails before writing anything (a mistyped data path) should leave no empty run directory behind:
    ``release(discard_if_unused=True)`` removes the lock file, and the directory when this lock created it and
    nothing else is in it. The file is unlinked while the lock is still held, so a process that opened it just
    before finds, once it holds the lock, that the path no longer names its file and starts over on a new one."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: Optional[int] = None
        self._created_dir = False

    def acquire(self) -> "RunLock":
        while True:
            fd = self._open()
            if fd is None or self._names_file(fd):
                break
            os.close(fd)  # the holder before us discarded this file (and maybe its directory): take the new one
        if fd is None:
            return self
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            f"pid {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
            0,
        )
        self._fd = fd
        return self

    def _names_file(self, fd: int) -> bool:
        """Whether ``self.path`` is still the file open as ``fd`` (and not unlinked by a discarding holder)."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def _open(self) -> Optional[int]:
        """The lock file's descriptor with the flock taken; None where the file system has no flock."""
        while True:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._created_dir = True
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                break
            except FileNotFoundError:  # the directory was discarded between the check and the open: make it again
                continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
                os.close(fd)
                raise RunDirError(
                    f"{self.path.parent} is in use by another run ({holder}): one process trains into a run directory "
                    f"at a time. Wait for it or stop it, or use another run.name."
                ) from None
            os.close(fd)
            if err.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK):  # a file system without flock (some NFS
                print(f"[cjepa] warning: {self.path.parent} cannot be locked ({err.strerror}); make sure no other run "
                      "uses it", file=sys.stderr)  # or Lustre mounts): train unlocked rather than not at all
                return None
            raise
        return fd

    def release(self, *, discard_if_unused: bool = False) -> None:
        """Drop the lock. ``discard_if_unused``: remove the lock file, and the run directory if this lock made it and
        it holds nothing else, so that a run which wrote nothing leaves nothing."""
        if self._fd is None:
            return
        if discard_if_unused:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # still locked: a process waiting on this file re-checks the path (acquire)
            if self._created_dir:
                with contextlib.suppress(OSError):  # not empty: the run wrote something, keep it all
                    self.path.parent.rmdir()
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None


class MetricsLogger:
    """metrics.jsonl + tensorboard scalars/figures on rank 0; a no-op elsewhere."""

    def __init__(self, run_dir: Path, enabled: bool = True, purge_step: Optional[int] = None):
        """``purge_step``: tensorboard drops the events from earlier writers at this step and later (a resumed run
        logs those steps again)."""
        self.enabled = enabled
        self.run_dir = run_dir
        self._tb = None
        self._jsonl = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge_step)
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
