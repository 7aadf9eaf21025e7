"""Train, load and evaluate an ALOE reasoner: :class:`cjepa.tasks.vqa.VQATask` run by the generic trainer, a
trained reasoner read back from its checkpoint, and its scores on a question split under a protocol."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Optional

import torch

from cjepa.config import Config, ConfigError, merge
from cjepa.distributed.env import DistEnv, destroy_process_group, pick_device
from cjepa.eval.vqa.evaluate import evaluate_reasoner, write_outputs
from cjepa.eval.vqa.model import ALOEReasoner, load_reasoner_state
from cjepa.eval.vqa.text import Vocab
from cjepa.tasks.vqa import (
    REASONER_CHECKPOINT_KEYS,
    VQATask,
    build_split,
    eval_offsets,
    reasoner_from_config,
    trainer_config,
)
from cjepa.trainer import Trainer
from cjepa.utils.checkpoint import load_model_state, load_train_state, resolve_checkpoint
from cjepa.utils.precision import autocast_dtype, resolve_precision


def train_reasoner(cfg: Config, progress: bool = True) -> dict:
    """Train (or resume) the reasoner described by ``cfg.vqa``; returns the trainer summary."""
    tcfg = trainer_config(cfg)
    try:
        return Trainer(tcfg, VQATask(tcfg, progress=progress), progress=progress).fit()
    finally:
        destroy_process_group()


def load_reasoner(checkpoint: str, cfg: Config, device: torch.device) -> tuple[ALOEReasoner, Vocab, Config]:
    """(model, vocab, config with the checkpoint's reasoner settings) from a VQA checkpoint or run dir."""
    import yaml

    if not checkpoint:
        raise ConfigError("vqa.checkpoint is required: a reasoner checkpoint dir or run dir")
    ckpt = resolve_checkpoint(checkpoint)
    if not ckpt.is_dir() or not (ckpt / "train_state.pt").is_file():
        raise ConfigError(f"{ckpt} is not a reasoner checkpoint directory (needs model.pt, train_state.pt, "
                          "config.yaml)")
    task_state = load_train_state(ckpt).get("task", {})
    if "vocab" not in task_state:
        raise ConfigError(f"{ckpt}: no vocabulary in the task state; is it a VQA checkpoint?")
    c = copy.deepcopy(cfg)
    saved = yaml.safe_load((ckpt / "config.yaml").read_text()) or {}
    arch = {k: saved.get("vqa", {})[k] for k in REASONER_CHECKPOINT_KEYS if k in saved.get("vqa", {})}
    merge(c.vqa, arch, "vqa.", str(ckpt / "config.yaml"))
    vocab = Vocab.from_dict(task_state["vocab"], str(ckpt))
    shape = task_state["shape"]
    model = reasoner_from_config(c, vocab, int(shape["num_slots"]), int(shape["slot_dim"]))
    load_reasoner_state(model, load_model_state(ckpt), f"{ckpt} (vqa.checkpoint)")
    return model.to(device).eval(), vocab, c


def evaluate_checkpoint(cfg: Config, progress: bool = True, out_dir: Optional[Path] = None) -> tuple[dict, dict, Path]:
    """Evaluate ``vqa.checkpoint`` on ``vqa.eval_split`` (questions ``vqa.questions_val``) under ``vqa.protocol``;
    the outputs go to ``out_dir`` (default: the checkpoint's run dir)."""
    device = pick_device(cfg.run.device, DistEnv())
    model, vocab, c = load_reasoner(cfg.vqa.checkpoint, cfg, device)
    ds, info = build_split(c, c.vqa.eval_split, c.vqa.questions_val, vocab, labelled=None)
    if (ds.num_slots, ds.slot_dim) != (model.num_slots, model.slot_dim):
        raise ConfigError(
            f"slots of {c.vqa.slots} are {(ds.num_slots, ds.slot_dim)}; the reasoner was trained on "
            f"{(model.num_slots, model.slot_dim)}"
        )
    dtype = autocast_dtype(resolve_precision(cfg.train.precision, device))
    res = evaluate_reasoner(
        model, ds, eval_offsets(c), batch_size=c.vqa.val_batch_size, device=device, progress=progress,
        autocast_dtype=dtype
    )
    if out_dir is None:
        out_dir = resolve_checkpoint(cfg.vqa.checkpoint)
        out_dir = out_dir.parent.parent if out_dir.parent.name == "checkpoints" else out_dir
    write_outputs(
        res,
        ds.qs,
        vocab.answer_names,
        out_dir,
        f"{c.vqa.eval_split}_{c.vqa.protocol}",
        {"data": info, "protocol": c.vqa.protocol, "checkpoint": str(cfg.vqa.checkpoint)},
    )
    print(f"[cjepa] wrote {out_dir}/eval_{c.vqa.eval_split}_{c.vqa.protocol}.json", file=sys.stderr)
    return res, info, out_dir
