"""cjepa demo: the newcomer's first command.

Runs the longest chain that exists on the built-in world, on a CPU, in minutes: generate the slot world
(bouncing, colliding objects embedded into slots), train the C-JEPA predictor with object-level masking,
validate, and measure rollout error on held-out videos against the copy-last-frame baseline. Ends with a
summary table and the tensorboard command.
"""

from __future__ import annotations

import sys
import time

from cjepa.cli import add_config_args


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--full", action="store_true", help="the bigger run (configs/world/demo_full.yaml): more data, wider model, longer")


def run(args) -> int:
    from cjepa.commands.train import print_summary
    from cjepa.config import load_config
    from cjepa.paths import config_path
    from cjepa.train import train
    from cjepa.utils.report import table

    base = [str(config_path("world/demo_full.yaml" if args.full else "world/demo.yaml"))]
    cfg = load_config(base + list(args.config), args.overrides)
    t0 = time.time()
    print(f"cjepa demo: built-in slot world ({cfg.data.synthetic.num_train} train / {cfg.data.synthetic.num_val} "
          f"held-out videos), predictor {cfg.model.depth}x{cfg.model.slot_dim}, masking {cfg.masking.num_masked}"
          f"{'' if cfg.masking.num_masked_max is None else '-' + str(cfg.masking.num_masked_max)} of {cfg.model.num_slots} slots",
          file=sys.stderr)
    summary = train(cfg)
    fe = summary["final_eval"]
    mean_pred = sum(fe["mse"]) / len(fe["mse"])
    mean_base = sum(fe["baseline_mse"]) / len(fe["baseline_mse"])
    print()
    print_summary(summary)
    print()
    print(table([
        ("train loss (last log)", summary.get("train/loss", float("nan"))),
        ("val future MSE", summary.get("val/loss_future", float("nan"))),
        ("rollout MSE, predictor (mean over steps)", mean_pred),
        ("rollout MSE, copy-last-frame baseline", mean_base),
        ("predictor / baseline", mean_pred / mean_base),
        ("wall time (s)", time.time() - t0),
    ], ["demo summary", "value"]))
    verdict = "beats" if mean_pred < mean_base else "does NOT beat"
    print(f"\nThe predictor {verdict} the copy-last-frame baseline on held-out rollouts.")
    return 0
