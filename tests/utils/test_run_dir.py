"""Contracts of run directories: one holder at a time (a lock that dies with its process), metric rows past a
resumed step dropped, config changes listed by key."""

import json
import os
import socket
import subprocess
import sys

import pytest

from cjepa.utils.run_dir import RunDirError, RunLock, config_changes, resumable, truncate_metrics
from tests.helpers import REPO

HOLD = ("import sys, time; from cjepa.utils.run_dir import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(120)")


def test_lock_has_one_holder_and_dies_with_it(tmp_path):
    """While another process holds the lock, taking it fails with the holder's pid and host; after that process is
    killed (no clean-up runs), it can be taken again, as a requeued SLURM job does. Released, it can be retaken
    in the same process (a requeue inside one process, as submitit's debug executor runs it)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError,
                           match=rf"{tmp_path} is in use by another run \(pid {holder.pid} on host "
                                 rf"{socket.gethostname()} since "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(tmp_path).acquire()
    assert (tmp_path / "run.lock").read_text().startswith(f"pid {os.getpid()} on host")
    lock.release()
    RunLock(tmp_path).acquire().release()


def test_truncate_metrics_drops_rows_after_the_step_and_a_cut_line(tmp_path):
    rows = [json.dumps({"step": s, "train/loss": 1.0}) for s in (2, 4, 6, 8)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(rows) + '\n{"step": 10, "tra')
    assert truncate_metrics(tmp_path, 4) == 3
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2, 4]
    assert truncate_metrics(tmp_path, 4) == 0 and truncate_metrics(tmp_path / "none", 0) == 0


def test_config_changes_by_dotted_key():
    """Changed values are listed by dotted key; keys the old config lacks (added to the code since) are not."""
    old = {"optim": {"lr": 1e-3}, "train": {"max_steps": 6}, "launch": {"nodes": 1}}
    new = {"optim": {"lr": 2e-3}, "train": {"max_steps": 9, "new_key": 1}, "launch": {"nodes": 2}}
    assert config_changes(old, new) == {"optim.lr": (1e-3, 2e-3), "train.max_steps": (6, 9), "launch.nodes": (1, 2)}
    assert [k for k in config_changes(old, new) if not resumable(k)] == ["optim.lr"]
