"""Picks and builds the training engine that ``dist.engine`` names for this process's world.

The factory sits one level above the engines it builds: ``deepspeed.py`` imports the shared pieces of
``engine.py`` (the LR schedule), so choosing between them there would be an import cycle.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cjepa.distributed.deepspeed import DeepSpeedEngine
from cjepa.distributed.engine import Engine, LocalEngine
from cjepa.distributed.env import DistEnv


def build_engine(module: nn.Module, param_groups: list[dict], cfg, env: DistEnv, device: torch.device,
                 total_steps: int) -> Engine:
    engine = cfg.dist.engine
    if engine == "auto":
        engine = "ddp" if env.distributed else "single"
    if engine == "single" and env.distributed:
        raise RuntimeError(f"dist.engine=single but the job has {env.world_size} processes")
    if engine == "ddp" and not env.distributed:
        engine = "single"  # a one-process DDP run is a single run; nothing to reduce
    if engine == "deepspeed":
        return DeepSpeedEngine(module, param_groups, cfg, env, device, total_steps)
    return LocalEngine(module, param_groups, cfg, env, device, total_steps)
