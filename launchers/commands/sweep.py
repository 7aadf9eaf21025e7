"""cjepa sweep: a grid or list of overrides as one SLURM job array, then a table of every job's final metrics.

``cjepa sweep -c configs/smoke/cpu.yaml masking.num_masked=0,1,2,3,4 run.seed=0,1,2`` submits 15 jobs (a grid;
``--zip`` pairs the values instead). ``--dry-run`` validates and lists the configs without submitting. The
launcher itself (``launchers/sweep.py``) is imported only when the command runs.
"""

from __future__ import annotations

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--name", help="sweep name: the folder under run.out_dir (default: sweep-<date>-<time>)")
    p.add_argument("--zip", action="store_true", help="pair the swept values position by position instead of a grid")
    p.add_argument("--list", metavar="FILE",
                   help="YAML list of override sets (mappings or 'key=value' lists), one job each")
    p.add_argument("--cluster", help="shortcut for launch.cluster=NAME (presets: launchers/clusters.py)")
    p.add_argument("--dry-run", action="store_true", help="resolve and validate every job's config; submit nothing")
    p.add_argument("--show-config", action="store_true", help="with --dry-run: print every resolved config")
    p.add_argument("--no-wait", action="store_true", help="return after submitting (table later with --summary)")
    p.add_argument("--summary", metavar="SWEEP_DIR",
                   help="print the results table of a submitted sweep (and write each finished job's tensorboard "
                        "HParams session) and exit")
    p.add_argument("--csv", metavar="FILE",
                   help="also write the results table (of --summary, or of a sweep that waits) as CSV")


def run(args) -> int:
    # imported here for start-up time: the launcher pulls in torch and submitit, and `cjepa --help` imports this module
    from launchers.sweep import run_from_args

    return run_from_args(args)
