"""The ``cjepa`` command line.

Every subcommand takes ``-c/--config FILE`` (repeatable; later files override earlier ones) and dotted
``key=value`` overrides, prints a progress bar on long work and a summary at the end. Subcommands live in
``cjepa/commands/<name>.py`` (``submit`` and ``sweep`` in ``launchers/commands/``); building the parser imports no
torch, so ``cjepa --help`` stays fast.

Errors: a failure the user can act on (``cjepa.errors``: a bad path, value or flag) is printed as one line
``cjepa COMMAND: message`` with exit code 2; ``--debug`` shows the full traceback instead. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from cjepa.errors import EXIT_USER_ERROR, is_user_error, one_line

# name -> (the module that implements it, one-line help). A command module declares ``add_arguments(parser)`` and
# ``run(args) -> int``. It is found by name, so the SLURM launchers (``launchers.commands``, which import cjepa) add
# their commands here without cjepa importing launchers.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("cjepa.commands.demo", "run the whole pipeline on the built-in world on CPU in minutes (start here)"),
    "train": ("cjepa.commands.train",
              "train the C-JEPA predictor on slot videos (single process, torchrun DDP, DeepSpeed)"),
    "data": ("cjepa.commands.data",
             "write video shards: built-in physics world, real CLEVRER (webdataset tar + manifest)"),
    "pretrain": ("cjepa.commands.pretrain",
                 "train the predictor streaming from raw video shards through the frozen encoder (no slot files)"),
    "rollout": ("cjepa.commands.rollout",
                "roll slot videos out with a trained predictor (CLEVRER 128 -> 160 frames) into a slot store"),
    "train-encoder": ("cjepa.commands.train_encoder",
                      "train the object-centric encoder (VideoSAUR or SAVi) on video clips"),
    "extract": ("cjepa.commands.extract",
                "encode every video with a trained encoder into a slot store (slots, object ids, Push-T extras)"),
    "convert": ("cjepa.commands.convert", "turn a DeepSpeed (ZeRO) checkpoint into a plain state_dict file (model.pt)"),
    "submit": ("launchers.commands.submit",
               "submit one training run as a SLURM job (submitit; code snapshot, requeue on preemption)"),
    "sweep": ("launchers.commands.sweep",
              "submit a grid or list of overrides as one SLURM job array and tabulate the results"),
    "vqa": ("cjepa.commands.vqa",
            "CLEVRER-style VQA with the ALOE reasoner on (rolled-out) slots, and the masking study"),
    "pusht": ("cjepa.commands.pusht",
              "generate the Push-T dataset: scripted-expert + random episodes (video shards, state-slot store)"),
    "plan": ("cjepa.commands.plan",
             "evaluate Push-T world models with CEM-MPC planning (success rate over seeds, planning time)"),
    "probe": ("cjepa.commands.probe",
              "attention probing: a masked object's attention to its collision partner vs the other objects"),
}

EPILOG = """\
Configuration: -c configs/<area>/<file>.yaml (deltas over the defaults in cjepa/config/schema/; the shipped configs
are found from any directory), then overrides like optim.lr=3e-4 masking.num_masked=2, before or after options.
Unknown keys are errors. Every run writes runs/<run.name>/ with the resolved config.yaml, tensorboard logs (tb/),
metrics.jsonl, checkpoints/ and summary.json.

Exit codes: 0 done; 1 the work ran and failed (e.g. a non-finite loss, verification problems); 2 a usage or
input error, printed as one line naming the key, file or flag (--debug: full traceback); 3 preempted (checkpoint
written, resume by running again).
"""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _flag_hint(unknown: list[str], argv: list[str]) -> str:
    """A stray ``--lr 3e-4`` -> '; config keys are overrides: optim.lr=3e-4 or vqa.lr=3e-4'."""
    from cjepa.config import keys_named  # start-up time: the config schema loads only to explain a stray flag

    for word in unknown:
        if word.startswith("--"):
            flag, _, value = word[2:].partition("=")
            i = argv.index(word)
            if not value and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                value = argv[i + 1]  # argparse took it for an override
            keys = keys_named(flag.replace("-", "_"))
            if keys:
                return "; config keys are overrides: " + " or ".join(f"{k}={value or 'VALUE'}" for k in keys)
    return ""


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", action="append", default=[], metavar="FILE", help="YAML config (repeatable)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. optim.lr=3e-4")


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """Every command with its one-line help; only ``command``'s module is imported and its arguments added (so a
    run loads one command module, and `cjepa --help` none)."""
    parser = Parser(
        prog="cjepa",
        description="C-JEPA: object-centric world models trained with object-level masking, from laptop to SLURM.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error (also after COMMAND)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_module=mod)
    return parser


def command_word(argv: list[str]) -> Optional[str]:
    """The sub-command of ``argv``: its first word that is not an option (only --debug and -h come before it)."""
    return next((a for a in argv if not a.startswith("-")), None)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse with overrides allowed anywhere: ``cjepa train -c F --no-progress optim.lr=1`` works like
    ``cjepa train -c F optim.lr=1 --no-progress``. (argparse's parse_intermixed_args refuses sub-commands, so
    the ``key=value`` words argparse leaves over are appended to the overrides in their order.)"""
    debug = "--debug" in argv  # accepted after COMMAND too, where the sub-command's parser does not know it
    argv = [a for a in argv if a != "--debug"]
    args, extra = parser.parse_known_args(argv)
    args.debug = debug
    if extra and hasattr(args, "overrides"):
        args.overrides = list(args.overrides) + [a for a in extra if "=" in a and not a.startswith("-")]
        extra = [a for a in extra if not ("=" in a and not a.startswith("-"))]
    if extra:
        prog = f"cjepa {args.command}" if getattr(args, "command", None) else parser.prog
        parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extra)}{_flag_hint(extra, argv)} (see {prog} "
                       "--help)\n")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_word(argv))
    args = parse(parser, argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    try:
        return int(args._module.run(args) or 0)
    except Exception as err:
        # The one place that maps exceptions to exit codes: user errors become one line and code 2.
        if args.debug or not is_user_error(err):
            raise
        kind = "config error: " if type(err).__name__ == "ConfigError" else ""
        print(f"cjepa {args.command}: {kind}{one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        # Ctrl-C: one line instead of a traceback (the trainer's says where it saved); 130 = 128 + SIGINT, as shells
        print(f"cjepa {args.command}: interrupted{f' ({err})' if str(err) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
