"""cjepa train: fit the C-JEPA predictor. Under torchrun or srun it runs DDP (or DeepSpeed with
dist.engine=deepspeed)."""

from __future__ import annotations

import sys

from cjepa.cli import add_config_args
from cjepa.utils.report import print_train_summary


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")


def execute(cfg, command: str, progress: bool = True, summary_printer=None) -> int:
    """Train ``cfg`` (its train.task) and print the summary; map the trainer's stops to exit codes."""
    from cjepa.data.clips import VideoSourceUnavailable
    from cjepa.distributed.env import detect_env
    from cjepa.errors import check_writable_dir
    from cjepa.trainer import EXIT_PREEMPTED, NonFiniteLoss, Preempted, train

    check_writable_dir(cfg.run.out_dir, "run.out_dir")  # before any data is loaded or a step is taken
    try:
        summary = train(cfg, progress=progress)
    except VideoSourceUnavailable as err:
        print(f"cjepa {command}: {err}", file=sys.stderr)
        return 2
    except NonFiniteLoss as err:
        print(f"cjepa {command}: {err}", file=sys.stderr)
        return 1
    except Preempted as err:
        print(f"cjepa {command}: {err}", file=sys.stderr)
        return EXIT_PREEMPTED
    if detect_env().is_main:
        (summary_printer or print_train_summary)(summary)
    return 0


def run(args) -> int:
    from cjepa.config import load_config

    return execute(load_config(args.config, args.overrides), "train", progress=not args.no_progress)
