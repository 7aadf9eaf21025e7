"""What runs inside a SLURM job: the training of one resolved config, on every task of the job.

:class:`TrainJob` is a submitit ``Checkpointable``: a preempted or timed-out job is requeued and the same call
runs again; the trainer then resumes from the run directory's latest checkpoint (``train.resume=auto``), so the
object carries no state of its own. The run directory's lock (``run.lock``, an ``flock``) died with the previous
process, so the requeued one takes it again.

Signals. SLURM sends SIGTERM on preemption, ``scontrol requeue`` and cancellation, and (asked for by the
launcher) SIGUSR1 ``launch.signal_delay_s`` seconds before the time limit. The trainer catches both, lets every
rank finish the current step, writes a checkpoint and raises :class:`cjepa.trainer.Preempted`. Then:

* SIGUSR1 (time limit): submitit's own handler for that signal is called, which records the requeued
  submission (:meth:`TrainJob.checkpoint`) and runs ``scontrol requeue`` (at most ``launch.max_requeues`` times);
* SIGTERM: SLURM itself requeues (preemption, ``scontrol requeue``) or ends (``scancel``) the job.

Either way the process exits with :data:`cjepa.trainer.EXIT_PREEMPTED` without a result file, so submitit does not
report the job as finished while it waits in the queue.

Lost ranks. When another rank of a multi-process job dies (its process or its node) or its link goes down, the
collectives of the survivors raise within ``dist.timeout_s`` (gloo: "Connection reset by peer", "Timed out
waiting"). A survivor then asks SLURM to requeue the whole job (``scontrol requeue``), at most
``launch.max_requeues`` times (``SLURM_RESTART_COUNT``), and exits with :data:`EXIT_PREEMPTED`; the job runs
again and resumes from the last checkpoint every rank finished. A failure that is not a lost peer fails the job.

Per-node logs: every task appends one line per event (start with its rendezvous, finish, loss of a peer) to
``<job folder>/logs/nodes/<host>.log``, next to submitit's per-rank ``<job id>_<rank>_log.{out,err}``.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import submitit

PREEMPT_SIGNAL = "USR1"  # submitit's time-limit signal; the trainer handles SIGUSR1 (and SIGTERM)


def _threads_from_slurm() -> None:
    """Use the cores SLURM gave the task (without cgroups torch would take every core of the node)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and int(cpus) > 0:
        import torch

        torch.set_num_threads(int(cpus))


# What gloo and NCCL raise when a peer is gone: a reset or closed connection, or a collective that timed out.
LOST_PEER = re.compile(r"connection (reset|closed)|closed by peer|timed out|timeout|watchdog|broken pipe",
                       re.IGNORECASE)


def lost_peer(err: BaseException) -> bool:
    """True when `err` is a collective failing because another rank went away (not a bug of this rank). A
    rendezvous that never formed is not: running the job again would meet the same address and network."""
    import torch.distributed as dist

    # in the job's process, where the code snapshot is first on sys.path, not at submission
    from cjepa.distributed.env import RendezvousError

    if isinstance(err, RendezvousError):
        return False
    return isinstance(err, dist.DistError) or (isinstance(err, RuntimeError) and bool(LOST_PEER.search(str(err))))


def node_log(line: str) -> None:
    """Append `line` to this host's log in the job folder (<job folder>/logs/nodes/<host>.log)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return
    folder = Path(submitit.JobEnvironment().paths.folder) / "nodes"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{socket.gethostname()}.log", "a") as f:
        f.write(f"{datetime.datetime.now().isoformat(timespec='milliseconds')} {line}\n")


def rendezvous_line() -> str:
    """This task's place in the job, as the trainer will see it."""
    # in the job's process, where the code snapshot is first on sys.path, not at submission
    from cjepa.distributed.env import detect_env

    env = detect_env()
    ifname = os.environ.get("GLOO_SOCKET_IFNAME") or os.environ.get("NCCL_SOCKET_IFNAME") or "-"
    return (f"rank {env.rank}/{env.world_size} (local {env.local_rank}, node {os.environ.get('SLURM_NODEID', '0')}) "
            f"job {os.environ.get('SLURM_JOB_ID', '-')} restart {os.environ.get('SLURM_RESTART_COUNT', '0')}: "
            f"master {env.master_addr}:{env.master_port}, interface {ifname}")


def requeue_after_lost_peer(err: BaseException, max_requeues: int) -> bool:
    """Ask SLURM to run the job again; False when the requeues are used up (or this is no SLURM job)."""
    # in the job's process, where the code snapshot is first on sys.path, not at submission
    from cjepa.distributed.env import detect_env

    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    # a job of one process has no peer to lose: its "timed out" is its own failure
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or restarts >= max_requeues or not detect_env().distributed:
        return False
    job_id = submitit.JobEnvironment().job_id  # "<array id>_<task>" inside an array: the task, not the array
    node_log(f"lost a peer ({type(err).__name__}: {str(err)[:200]}); requeue {restarts + 1} of {max_requeues}")
    print(f"[cjepa] a peer rank is gone ({err}); requeueing job {job_id} ({restarts + 1}/{max_requeues})",
          file=sys.stderr, flush=True)
    # Several survivors may ask, some late (a rank behind a link that was down); only a request about the attempt
    # that is still running may requeue, never the attempt that already replaced it.
    if still_running_attempt(job_id, restarts):
        subprocess.run(["scontrol", "requeue", job_id], timeout=30, check=False)
    return True


def still_running_attempt(job_id: str, restarts: int) -> bool:
    """True when SLURM says the job runs and has been restarted `restarts` times (this process's attempt)."""
    try:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    state = re.search(r"\bJobState=(\w+)", out.stdout)
    count = re.search(r"\bRestarts=(\d+)", out.stdout)
    return bool(state and count and state.group(1) == "RUNNING" and int(count.group(1)) == restarts)


class TrainJob(submitit.helpers.Checkpointable):
    """Train ``config_file`` (a fully resolved config.yaml written at submission)."""

    def __init__(self, config_file: str, code_dir: Optional[str] = None):
        self.config_file = str(config_file)
        self.code_dir = None if code_dir is None else str(code_dir)

    def __call__(self) -> dict[str, Any]:
        _threads_from_slurm()
        # imported in the job's process, where the code snapshot is first on sys.path, not at submission
        import cjepa
        from cjepa.config import load_config
        from cjepa.trainer import EXIT_PREEMPTED, Preempted, train

        cfg = load_config([self.config_file])
        node_log(f"start {rendezvous_line()}")
        try:
            summary = train(cfg, progress=False)
        except Preempted as stop:
            print(f"[cjepa] {stop}; leaving the job to SLURM's requeue (exit {EXIT_PREEMPTED})", file=sys.stderr,
                  flush=True)
            if stop.signum == getattr(signal, f"SIG{PREEMPT_SIGNAL}"):
                handler = signal.getsignal(stop.signum)  # submitit's (the trainer restored it): requeue + exit
                if callable(handler):
                    handler(stop.signum, None)
            sys.exit(EXIT_PREEMPTED)
        except Exception as err:
            if lost_peer(err) and requeue_after_lost_peer(err, cfg.launch.max_requeues):
                sys.exit(EXIT_PREEMPTED)
            raise
        node_log(f"finished at step {summary.get('steps')}")
        env = submitit.JobEnvironment() if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" else None
        return {
            **summary,
            "job_id": env.job_id if env is not None else "debug",
            "code": os.path.dirname(os.path.dirname(os.path.abspath(cjepa.__file__))),
        }

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Requeue the same call: the trainer finds the checkpoint it just wrote and resumes from it."""
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)
