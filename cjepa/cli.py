"""The ``cjepa`` command line.

Every subcommand takes ``-c/--config FILE`` (repeatable; later files override earlier ones) and dotted
``key=value`` overrides, prints a progress bar on long work and a summary at the end. Subcommands live in
``cjepa/commands/<name>.py`` and are imported only when called, so ``cjepa --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

# name -> (module under cjepa.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole pipeline on the built-in world on CPU in minutes (start here)"),
    "train": ("train", "train the C-JEPA predictor on slot videos (single process, torchrun DDP, DeepSpeed)"),
    "data": ("data", "write video shards: built-in physics world, real CLEVRER (webdataset tar + manifest)"),
    "pretrain": ("pretrain", "train the predictor streaming from raw video shards through the frozen encoder (no slot files)"),
    "rollout": ("rollout", "roll slot videos out with a trained predictor (CLEVRER 128 -> 160 frames) into a slot store"),
    "train-encoder": ("train_encoder", "train the object-centric encoder (VideoSAUR or SAVi) on video clips"),
    "extract": ("extract", "encode every video with a trained encoder into a slot store (slots, object ids, Push-T extras)"),
    "convert": ("convert", "turn a DeepSpeed (ZeRO) checkpoint into a plain state_dict file (model.pt)"),
    "submit": ("submit", "submit one training run as a SLURM job (submitit; code snapshot, requeue on preemption)"),
    "sweep": ("sweep", "submit a grid or list of overrides as one SLURM job array and tabulate the results"),
    "vqa": ("vqa", "CLEVRER-style VQA with the ALOE reasoner on (rolled-out) slots, and the masking study"),
    "pusht": ("pusht", "generate the Push-T dataset: scripted-expert + random episodes (video shards, state-slot store)"),
    "plan": ("plan", "evaluate Push-T world models with CEM-MPC planning (success rate over seeds, planning time)"),
}

EPILOG = """\
Configuration: -c configs/<area>/<file>.yaml (deltas over the defaults in cjepa/config.py), then overrides
like optim.lr=3e-4 masking.num_masked=2. Unknown keys are errors. Every run writes runs/<run.name>/ with the
resolved config.yaml, tensorboard logs (tb/), metrics.jsonl, checkpoints/ and summary.json.
"""


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", action="append", default=[], metavar="FILE", help="YAML config (repeatable)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=3e-4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cjepa",
        description="C-JEPA: object-centric world models trained with object-level masking, from laptop to SLURM.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = importlib.import_module(f"cjepa.commands.{module}")
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    from cjepa.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args._module.run(args) or 0)
    except ConfigError as err:
        print(f"cjepa {args.command}: config error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        # Ctrl-C: one line instead of a traceback (the trainer's says where it saved); 130 = 128 + SIGINT, as shells
        print(f"cjepa {args.command}: interrupted{f' ({err})' if str(err) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
