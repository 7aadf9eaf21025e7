"""The batch layout of a run: how the global batch (data.batch_size) splits into micro-batches per rank and
gradient-accumulation steps for a given world size. Computed here, once; logged, never set by users."""

from __future__ import annotations

from dataclasses import dataclass

from cjepa.config.errors import ConfigError
from cjepa.config.schema import Config


@dataclass
class Derived:
    """Values computed from the config and the launch (world size); logged, never set by users."""

    world_size: int
    micro_batch: int  # per rank, per forward
    grad_accum: int
    global_batch: int


def derive(cfg: Config, world_size: int) -> Derived:
    per_step = cfg.train.grad_accum * world_size
    if cfg.data.batch_size % per_step:
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size} must be divisible by train.grad_accum * world_size "
            f"= {cfg.train.grad_accum} * {world_size}"
        )
    return Derived(
        world_size=world_size,
        micro_batch=cfg.data.batch_size // per_step,
        grad_accum=cfg.train.grad_accum,
        global_batch=cfg.data.batch_size,
    )
