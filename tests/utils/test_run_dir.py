"""Contracts of run directories: one holder at a time (a lock that dies with its process), metric rows past a
resumed step dropped, config changes listed by key."""

import fcntl
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


def test_discarding_an_unused_lock_removes_only_what_it_made(tmp_path):
    """A run that wrote nothing leaves nothing: the lock file goes, and the directory too when the lock made it and
    it is empty. A directory that existed before, or that holds anything else, stays with all it holds."""
    made = tmp_path / "runs" / "typo"
    RunLock(made).acquire().release(discard_if_unused=True)
    assert not made.exists() and (tmp_path / "runs").is_dir()  # only the run's own directory goes

    written = tmp_path / "written"
    lock = RunLock(written).acquire()
    (written / "config.yaml").write_text("run: {}\n")
    lock.release(discard_if_unused=True)
    assert sorted(p.name for p in written.iterdir()) == ["config.yaml"]

    existing = tmp_path / "existing"
    existing.mkdir()
    RunLock(existing).acquire().release(discard_if_unused=True)
    assert existing.is_dir() and not any(existing.iterdir())

    kept = tmp_path / "kept"
    RunLock(kept).acquire().release()
    assert sorted(p.name for p in kept.iterdir()) == ["run.lock"]


def test_a_lock_file_discarded_under_a_waiting_process_is_not_taken(tmp_path, monkeypatch):
    """A process that opened the lock file just before its holder discarded it gets the flock on a file no path
    names any more; it must start over on a new file, or two runs would each hold "the" lock of one directory."""
    run = tmp_path / "run"
    holder = RunLock(run).acquire()
    stale = os.open(run / "run.lock", os.O_RDWR)  # the waiting process's open, before the discard
    holder.release(discard_if_unused=True)
    assert not run.exists()

    waiting = RunLock(run)
    opened, real_open = [], waiting._open

    def open_stale_first():
        if not opened:
            opened.append(stale)
            fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: the holder closed it
            return stale
        opened.append(real_open())
        return opened[-1]

    monkeypatch.setattr(waiting, "_open", open_stale_first)
    waiting.acquire()
    assert len(opened) == 2 and waiting._fd == opened[1]
    with pytest.raises(OSError):
        os.fstat(stale)  # closed by acquire
    assert (run / "run.lock").read_text().startswith(f"pid {os.getpid()}")
    with pytest.raises(RunDirError, match="is in use by another run"):
        RunLock(run).acquire()  # the new file is the one held
    waiting.release()


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
