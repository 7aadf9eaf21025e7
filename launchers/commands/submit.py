"""cjepa submit: one training run as one SLURM job (submitit): resources from the config's ``launch`` section and
a cluster preset, a code snapshot and the resolved config in the job folder, requeue + resume on preemption.

The launcher itself (``launchers/submit.py``) is imported only when the command runs; ``launch.cluster=debug``
runs the same job in this process without SLURM.
"""

from __future__ import annotations

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--cluster", help="shortcut for launch.cluster=NAME (presets: launchers/clusters.py)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print the resolved config and resources; submit nothing")
    p.add_argument("--wait", action="store_true", help="wait for the job and print its training summary")


def run(args) -> int:
    # imported here for start-up time: the launcher pulls in torch and submitit, and `cjepa --help` imports this module
    from launchers.submit import run_from_args

    return run_from_args(args)
