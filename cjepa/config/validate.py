"""The checks of a whole configuration: each section's own rules (its ``validate`` method) and the rules that
tie sections together, in one fixed order, so that a configuration with several mistakes always reports the same
first one."""

from __future__ import annotations

import math

from cjepa.config.errors import ConfigError
from cjepa.config.schema import Config


def validate(cfg: Config) -> None:
    """Every section's own rules and the rules across sections, each failing with the keys involved. Also fills in
    model.head_dim (a derived value)."""
    cfg.model.validate()
    cfg.masking.validate(num_slots=cfg.model.num_slots)
    cfg.data.validate(num_slots=cfg.model.num_slots)
    cfg.world.validate()
    cfg.train.validate()
    cfg.optim.validate()
    _validate_rates_and_steps(cfg)
    cfg.dist.validate()
    cfg.launch.validate()
    cfg.rollout.validate()
    cfg.data.pusht.validate()
    cfg.plan.validate()
    cfg.encoder.validate()
    _validate_pretrain_encoder(cfg)
    cfg.vqa.validate()
    cfg.study.validate()


def _validate_rates_and_steps(cfg: Config) -> None:
    """Learning rates are finite and positive (a zero or NaN rate trains nothing, silently); step counts are >= 0."""
    o, v = cfg.optim, cfg.vqa
    for key, lr in (("optim.lr", o.lr), ("optim.proprio_lr", o.proprio_lr), ("optim.action_lr", o.action_lr),
                    ("vqa.lr", v.lr)):
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(f"{key}={lr} must be a finite number > 0")
    t = cfg.train
    for key, n in (("train.epochs", t.epochs), ("train.max_steps", t.max_steps), ("train.val_every", t.val_every),
                   ("train.ckpt_every", t.ckpt_every), ("train.keep_checkpoints", t.keep_checkpoints),
                   ("optim.warmup_steps", o.warmup_steps), ("vqa.epochs", v.epochs), ("vqa.max_steps", v.max_steps),
                   ("encoder.vis_every", cfg.encoder.vis_every)):
        if n < 0:
            raise ConfigError(f"{key}={n} must be >= 0")


def _validate_pretrain_encoder(cfg: Config) -> None:
    if cfg.train.task == "pretrain" and cfg.encoder.kind == "savi" and cfg.encoder.savi.init == "cues":
        raise ConfigError(
            "train.task=pretrain streams clips without instance masks, so it cannot run a conditional encoder "
            "(encoder.savi.init=cues): extract slots with `cjepa extract`, then `cjepa train` on them"
        )
