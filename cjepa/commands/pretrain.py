"""cjepa pretrain: train the C-JEPA predictor straight from raw video shards through the frozen encoder.

One streaming job: decode (PyAV on CPU, DALI/NVDEC on GPU via data.decoder), encode with encoder.checkpoint,
train the predictor on the slot clips; no slot files in between. Mid-epoch resumable, DDP/DeepSpeed and SLURM
(`cjepa submit ... train.task=pretrain`) like `cjepa train`. The summary splits wall time between decode,
encode and predictor.
"""

from __future__ import annotations

from cjepa.cli import add_config_args
from cjepa.utils.report import print_train_summary, table


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def print_summary(summary: dict) -> None:
    print_train_summary(summary)
    fe = summary.get("final_eval") or {}
    if "time_split" in fe:
        rows = [(k.removesuffix("_s"), fe["time_s"][k], fe["time_split"][k]) for k in fe["time_split"]]
        print("\ntime split of the training steps")
        print(table(rows, ["stage", "seconds", "fraction"]))


def run(args) -> int:
    from cjepa.commands.train import execute
    from cjepa.config import load_config

    cfg = load_config(args.config, args.overrides)
    cfg.train.task = "pretrain"
    return execute(cfg, "pretrain", progress=not args.no_progress, summary_printer=print_summary)
