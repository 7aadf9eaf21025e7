"""Training engines behind one declared interface (:class:`Engine`): plain single-process, DDP, and
(cjepa.distributed.deepspeed) ZeRO.

The trainer runs ``forward`` through ``engine.model``, then ``backward(loss)`` and ``step()`` (which returns the
gradient norm without reading it on the host); it evaluates ``engine.module`` (the unwrapped model) inside
``eval_context()`` and checkpoints through ``module_state_dict()``, ``state_dict()``, ``save_extra_all_ranks()`` /
``save_extra()`` and ``load_checkpoint()``. DDP really all-reduces gradients here: the loss is computed through the
DDP wrapper (the original called ``predictor.module`` and skipped the reduction, Q10).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, ContextManager, Optional, Protocol, runtime_checkable

import torch
import torch.nn as nn

from cjepa.distributed.env import DistEnv


def lr_lambda(schedule: str, warmup: int, total: int, min_ratio: float):
    """Multiplier of the base LR at optimizer step s (0-based)."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        span = max(1, total - warmup)
        frac = min(1.0, (step - warmup) / span)
        if schedule == "cosine":
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac))
        if schedule == "exp_decay":
            return (min_ratio if min_ratio > 0 else 0.5) ** frac
        raise ValueError(f"unknown schedule {schedule!r}")

    return f


def build_optimizer(param_groups: list[dict], optim_cfg) -> torch.optim.Optimizer:
    """AdamW over ``param_groups``; on a CPU torch's fused kernel (one pass over all tensors).

    torch's CPU default is the per-tensor loop: about ten elementwise kernels per parameter tensor and a host read
    of its step count, which on the small models a CPU trains is a tenth of a step. GPUs keep torch's default (the
    multi-tensor path, already batched)."""
    groups = [{**g, "params": list(g["params"])} for g in param_groups]  # a generator would be read up here
    on_cpu = all(p.device.type == "cpu" for g in groups for p in g["params"])
    return torch.optim.AdamW(
        groups, lr=optim_cfg.lr, betas=tuple(optim_cfg.betas), eps=optim_cfg.eps,
        weight_decay=optim_cfg.weight_decay, fused=True if on_cpu else None
    )


@runtime_checkable
class Engine(Protocol):
    """What the trainer needs of an engine; every engine implements all of it (no optional parts)."""

    name: str  # "single", "ddp", "deepspeed-zero<stage>": logged and written to checkpoint metadata
    model: nn.Module  # what the forward runs through (the DDP / DeepSpeed wrapper, possibly compiled)
    module: nn.Module  # the unwrapped model that evaluation calls and checkpoints hold
    reads_own_model: bool  # resume loads the weights from the engine's own files, not from model.pt

    def no_sync(self, last_micro: bool) -> ContextManager: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> Any:
        """The optimizer step; the gradient norm as a device tensor, a float or None (read only when logging)."""

    def compile(self, backend: str) -> None: ...

    def lr(self) -> float: ...

    def eval_context(self) -> ContextManager:
        """Entered around evaluation code that calls ``module`` directly."""

    def state_dict(self) -> dict[str, Any]: ...

    def module_state_dict(self) -> Optional[dict[str, torch.Tensor]]:
        """The weights for ``model.pt``; None when :meth:`save_extra` writes ``model.pt`` itself."""

    def save_extra_all_ranks(self, staging: Path) -> None:
        """Collective, before rank 0 assembles a checkpoint: every rank writes what it alone holds."""

    def save_extra(self, ckpt_dir: Path) -> None:
        """Rank 0, inside the checkpoint being assembled: the engine's own files."""

    def load_checkpoint(self, ckpt_dir: Path, engine_state: dict, model_state: Optional[dict]) -> None:
        """Resume: the weights (``model_state``, None when :attr:`reads_own_model`) and the optimizer state."""


# The parameter-group settings that come from the config. Only these are put back after a resume: an optimizer may
# keep progress in its groups too (DeepSpeed's CPU Adam counts its steps in ``group["step"]``), which must load.
CONFIG_HYPERPARAMETERS = ("lr", "initial_lr", "weight_decay", "betas", "eps")


def optimizer_hyperparameters(param_groups: list[dict]) -> list[dict]:
    """Each parameter group's settings from the config (:data:`CONFIG_HYPERPARAMETERS`)."""
    return [{k: g[k] for k in CONFIG_HYPERPARAMETERS if k in g} for g in param_groups]


def restore_hyperparameters(param_groups: list[dict], scheduler: torch.optim.lr_scheduler.LambdaLR,
                            hyper: list[dict]) -> None:
    """After a checkpoint's optimizer and schedule were loaded: put back this run's ``hyper``
    (:func:`optimizer_hyperparameters` taken before loading) and set each group's learning rate to the schedule's
    multiplier at the resumed step on the new base rates. Loaded as saved, the checkpoint's values would win over
    a resume's changed config."""
    for group, fresh in zip(param_groups, hyper):
        group.update(fresh)
    scheduler.base_lrs = [g["initial_lr"] for g in param_groups]
    step = scheduler.last_epoch  # the multiplier of the step the run resumes at
    for group, base, factor in zip(param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(step)


class LocalEngine:
    """Single process or DDP (gloo on CPU, nccl on GPU)."""

    reads_own_model = False

    def __init__(self, module: nn.Module, param_groups: list[dict], cfg, env: DistEnv, device: torch.device,
                 total_steps: int):
        self.module = module.to(device)
        self.device, self.env, self.grad_clip = device, env, cfg.optim.grad_clip
        self.model: nn.Module = self.module
        if env.distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=ids)
        self.optimizer = build_optimizer(param_groups, cfg.optim)
        o = cfg.optim
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(o.schedule, o.warmup_steps, total_steps, o.min_lr_ratio)
        )
        self.name = "ddp" if env.distributed else "single"

    def no_sync(self, last_micro: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
        if self.env.distributed and not last_micro:
            return self.model.no_sync()
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def compile(self, backend: str) -> None:
        """torch.compile the forward; under DDP the wrapper itself, so DDP's optimizer splits graphs at buckets."""
        self.model = torch.compile(self.model, backend=backend)

    def step(self) -> Optional[torch.Tensor]:
        """The optimizer step; returns the pre-clip global gradient norm as a device tensor (None without clipping):
        reading it on the host would wait for the step, so the trainer reads it only when it logs."""
        norm = None
        if self.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """The optimizer's moments and the schedule's position from the checkpoint; its hyperparameters (learning
        rates, weight decay, betas) from this run's config. They are the same unless a resume changed the config
        (``train.allow_config_change``), and then the new values are what was asked for: loaded as saved, the
        checkpoint's learning rates would silently win."""
        hyper = optimizer_hyperparameters(self.optimizer.param_groups)
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        restore_hyperparameters(self.optimizer.param_groups, self.scheduler, hyper)

    def eval_context(self) -> ContextManager:
        """The module is whole on every rank: nothing to gather."""
        return contextlib.nullcontext()

    def module_state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def save_extra_all_ranks(self, staging: Path) -> None:
        """Nothing: rank 0 holds the whole state."""

    def save_extra(self, ckpt_dir: Path) -> None:
        """Nothing: ``model.pt`` and ``train_state.pt`` hold the whole state."""

    def load_checkpoint(self, ckpt_dir: Path, engine_state: dict, model_state: Optional[dict]) -> None:
        self.module.load_state_dict(model_state)
        self.load_state_dict(engine_state)

