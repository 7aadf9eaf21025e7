"""cjepa train-encoder: train the object-centric encoder (VideoSAUR or SAVi) on decoded video clips.

Clips come from the video source ``encoder.data.source`` (webdataset video shards by default). Runs single
process, under torchrun / srun as DDP, or with DeepSpeed, like ``cjepa train``; writes runs/<run.name>/ with
checkpoints, tensorboard (losses, FG-ARI / mBO, slot-mask images) and slot GIFs under media/.
"""

from __future__ import annotations

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")


def print_summary(summary: dict) -> None:
    from cjepa.utils.report import table

    rows = [(k, v) for k, v in summary.items() if isinstance(v, (int, float, str)) and k != "run_dir"]
    rows += [(f"final/{k}", v) for k, v in (summary.get("final_eval") or {}).items() if isinstance(v, (int, float))]
    print(table(rows, ["metric", "value"]))
    print(f"\nrun directory: {summary['run_dir']}   tensorboard --logdir {summary['tensorboard']}")


def run(args) -> int:
    from cjepa.commands.train import execute
    from cjepa.config import load_config

    cfg = load_config(args.config, args.overrides)
    cfg.train.task = "encoder"
    return execute(cfg, "train-encoder", progress=not args.no_progress, summary_printer=print_summary)
