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
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Optional

import submitit

PREEMPT_SIGNAL = "USR1"  # submitit's time-limit signal; the trainer handles SIGUSR1 (and SIGTERM)


def _threads_from_slurm() -> None:
    """Use the cores SLURM gave the task (without cgroups torch would take every core of the node)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit() and int(cpus) > 0:
        import torch

        torch.set_num_threads(int(cpus))


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
        try:
            summary = train(cfg, progress=False)
        except Preempted as stop:
            print(f"[cjepa] {stop}; leaving the job to SLURM's requeue (exit {EXIT_PREEMPTED})", file=sys.stderr, flush=True)
            if stop.signum == getattr(signal, f"SIG{PREEMPT_SIGNAL}"):
                handler = signal.getsignal(stop.signum)  # submitit's (the trainer restored it): requeue + exit
                if callable(handler):
                    handler(stop.signum, None)
            sys.exit(EXIT_PREEMPTED)
        env = submitit.JobEnvironment() if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" else None
        return {
            **summary,
            "job_id": env.job_id if env is not None else "debug",
            "code": os.path.dirname(os.path.dirname(os.path.abspath(cjepa.__file__))),
        }

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Requeue the same call: the trainer finds the checkpoint it just wrote and resumes from it."""
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)
