"""cjepa train: fit the C-JEPA predictor. Under torchrun or srun it runs DDP (or DeepSpeed with dist.engine=deepspeed)."""

from __future__ import annotations

import sys

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")


def print_summary(summary: dict) -> None:
    from cjepa.utils.report import table

    rows = [(k, v) for k, v in summary.items() if isinstance(v, (int, float, str)) and k not in ("run_dir",)]
    print(table(rows, ["metric", "value"]))
    fe = summary.get("final_eval") or {}
    if "mse" in fe:
        steps = range(1, len(fe["mse"]) + 1)
        print("\nrollout error on held-out videos (MSE per predicted step)")
        print(table([(i, a, b) for i, a, b in zip(steps, fe["mse"], fe["baseline_mse"])], ["step", "predictor", "copy-last-frame"]))
    print(f"\nrun directory: {summary['run_dir']}   tensorboard --logdir {summary['tensorboard']}")


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
        (summary_printer or print_summary)(summary)
    return 0


def run(args) -> int:
    from cjepa.config import load_config

    return execute(load_config(args.config, args.overrides), "train", progress=not args.no_progress)
