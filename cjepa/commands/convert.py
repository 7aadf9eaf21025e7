"""cjepa convert: a DeepSpeed checkpoint (any ZeRO stage, any world size) -> our plain state_dict file.

Checkpoints written by ``dist.engine=deepspeed`` already contain ``model.pt``; this command is for a bare DeepSpeed
save folder (``<dir>/latest`` + ``<dir>/<tag>/``), a checkpoint whose ``model.pt`` was removed, or a specific tag.
The fp32 master weights are merged from the optimizer shards on one CPU process (no process group), and the
result loads with ``torch.load(weights_only=True)`` into the plain model of the demo, rollout and evaluation code.
"""

from __future__ import annotations

import os
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("checkpoint",
                   help="a run dir (its latest checkpoint) or checkpoint dir of a dist.engine=deepspeed run, "
                   "or a bare DeepSpeed save folder (runs without DeepSpeed already have a plain model.pt)")
    p.add_argument("-o", "--out", help="output file (default: model.pt in the checkpoint dir)")
    p.add_argument("--tag", help="DeepSpeed tag to convert (default: the one named in the folder's 'latest' file)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _checkpoint_dir(path: Path) -> Path:
    from cjepa.utils.checkpoint import CheckpointError, latest_checkpoint

    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if (path / "checkpoints").is_dir():  # a run dir
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"run dir {path} has no finished checkpoint")
        return latest
    if path.name == "deepspeed" and (path.parent / "train_state.pt").is_file():  # the shards folder of one of ours
        return path.parent
    return path


def _require_deepspeed(src: Path, tag) -> None:
    """One of our checkpoints written without DeepSpeed has no shards: say so instead of DeepSpeed's own error."""
    from cjepa.distributed.deepspeed import DS_SUBDIR
    from cjepa.errors import UserError

    if (
        tag is None
        and not (src / DS_SUBDIR).is_dir()
        and not (src / "latest").is_file()
        and not any(src.glob("*model_states.pt"))
    ):
        if (src / "model.pt").is_file():
            raise UserError(f"{src} is a checkpoint of a run without DeepSpeed (dist.engine=single or ddp): its "
                            "model.pt "
                            "is already a plain state_dict, nothing to convert")
        raise UserError(f"{src} is not a DeepSpeed checkpoint: no {DS_SUBDIR}/ folder, no 'latest' file, no "
                        "*model_states.pt")


def _check_loads(sd: dict, config_yaml: Path) -> str:
    """Load into the model described by the checkpoint's config (strict); '-' when no config sits next to it."""
    if not config_yaml.is_file():
        return "- (no config.yaml next to the checkpoint)"
    from cjepa.config import load_config
    from cjepa.models.predictor import build_predictor
    from cjepa.utils.state_dict import load_checked

    model = build_predictor(load_config([str(config_yaml)]).model)
    load_checked(model, sd, str(config_yaml.parent), hint=f"the model section of {config_yaml}")
    return f"yes ({type(model).__name__}, strict)"


def run(args) -> int:
    import torch  # here, not at the top: building the CLI parser imports this module, and --help must stay fast

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # before deepspeed is imported
    from cjepa.distributed.deepspeed import deepspeed_to_state_dict
    from cjepa.errors import check_writable_dir
    from cjepa.utils.report import table

    src = _checkpoint_dir(Path(args.checkpoint))
    _require_deepspeed(src, args.tag)
    sd = deepspeed_to_state_dict(src, args.tag)
    out = Path(args.out) if args.out else src / "model.pt"
    if out.exists() and not args.overwrite:
        print(f"cjepa convert: {out} exists; pass --overwrite or choose -o")
        return 1
    check_writable_dir(out.parent, "--out" if args.out else "the checkpoint dir")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(sd, tmp)
    os.replace(tmp, out)
    loads = _check_loads(sd, src / "config.yaml")  # one of our checkpoints has its resolved config beside the shards
    print(table([
        ("source", str(src)),
        ("output", str(out)),
        ("tensors", len(sd)),
        ("parameters", sum(v.numel() for v in sd.values())),
        ("dtype", ", ".join(sorted({str(v.dtype).replace("torch.", "") for v in sd.values()}))),
        ("loads into the plain model", loads),
    ], ["convert", "value"]))
    return 0
