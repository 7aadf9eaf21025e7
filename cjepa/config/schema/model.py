"""The predictor: its ``model`` shape, the ``masking`` of its objective and the attention ``kernels``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional

from cjepa.config.errors import ConfigError


@dataclass(kw_only=True)
class ModelConfig:
    # "slots": CLEVRER/PHYRE predictor over object slots; "pusht": object slots + proprio node + action node.
    kind: Literal["slots", "pusht"] = "slots"
    num_slots: int = 7  # S object slots (aux nodes of the pusht kind come on top)
    slot_dim: int = 128  # D
    history_frames: int = 6  # T_h
    pred_frames: int = 10  # T_p
    depth: int = 6
    heads: int = 16
    # Per-head width. None -> slot_dim // heads, which is what the original computes (it ignores its own
    # dim_head=64 argument, Q3). Any value is allowed in the cjepa layout; the reference layout needs D/H.
    head_dim: Optional[int] = None
    mlp_dim: int = 2048
    dropout: float = 0.1
    # "cjepa": pre-LayerNorm attention, small time-PE init. "reference": the original module exactly
    # (no LayerNorm before attention, head dim D/H, time PE ~ N(0, 1)), same state_dict keys and shapes,
    # so released checkpoints load with weights_only=True.
    layout: Literal["cjepa", "reference"] = "cjepa"
    time_pe_std: float = 0.02  # the reference layout uses 1.0 (Q3)
    # Predict each slot's change from its last visible history frame instead of the slot itself (cjepa layout
    # only; the original predicts slots). A rollout then starts at copy-last and the network learns the motion.
    residual: bool = False
    # Every query token (future steps, masked history steps) also carries its slot's last visible history frame
    # (cjepa layout only): the state a slot moves on from, instead of only its t=0 identity anchor.
    query_last: bool = False
    # The transformer's own width (cjepa layout only): tokens are projected from slot_dim to it before the
    # transformer and back after, so the predictor can be wider than the slots it predicts (Push-T state slots
    # are 64-d). None = slot_dim with no projection, as the original.
    width: Optional[int] = None
    proprio_dim: int = 4  # pusht kind only
    action_dim: int = 2  # raw env action size (pusht kind only)
    action_chunk: int = 5  # env steps per predictor step; the action node sees action_chunk * action_dim

    def validate(self) -> None:
        """Sizes are positive; fills in head_dim (a derived value) and checks what the reference layout needs."""
        if self.slot_dim <= 0 or self.heads <= 0 or self.depth <= 0:
            raise ConfigError("model.slot_dim, model.heads and model.depth must be positive")
        if self.history_frames < 1 or self.pred_frames < 1:
            raise ConfigError("model.history_frames and model.pred_frames must be >= 1")
        if self.width is not None and self.width <= 0:
            raise ConfigError(f"model.width={self.width} must be positive (or null: the slot width)")
        inner, name = (self.slot_dim, "slot_dim") if self.width is None else (self.width, "width")
        if self.head_dim is None:
            if inner % self.heads:
                raise ConfigError(
                    f"model.{name}={inner} is not divisible by model.heads={self.heads}; set model.head_dim"
                )
            self.head_dim = inner // self.heads
        if self.layout == "reference":
            for key in ("residual", "query_last", "width"):
                value = getattr(self, key)
                if value not in (False, None):
                    shown = "true" if value is True else value
                    raise ConfigError(
                        f"model.{key}={shown} is an option of the cjepa layout; the reference layout is the original"
                    )
            if self.head_dim * self.heads != self.slot_dim:
                raise ConfigError(
                    f"model.layout=reference needs model.head_dim * model.heads == model.slot_dim "
                    f"({self.head_dim} * {self.heads} != {self.slot_dim}): the original splits D across heads"
                )


@dataclass(kw_only=True)
class MaskingConfig:
    # "random": a fresh masked set for every sample at every step (fixes Q1).
    # "fixed": the original behaviour, RandomState(seed).choice(S, M) -> the same slots for the whole run.
    mode: Literal["random", "fixed"] = "random"
    num_masked: int = 2  # M (or the lower end of the range below)
    num_masked_max: Optional[int] = None  # if set: M ~ Uniform{num_masked .. num_masked_max} per sample
    seed: int = 42
    # The original's masked-history loss includes t=0, where the masked slot is visible (Q2). False drops it.
    history_loss_includes_t0: bool = False
    # "mse": the original future loss. "relative_to_copy_last": each future step's MSE divided by the copy-last
    # MSE of that step on the batch, so early steps weigh as much as late ones (cjepa.losses).
    future_loss: Literal["mse", "relative_to_copy_last"] = "mse"
    # Per object slot weight of the future MSE in training, by slot position (Push-T state slots: agent, block,
    # background...): the weighted mean sum_s w_s MSE_s / sum_s w_s. Empty (default) = the plain mean over
    # slots; equal weights give the same loss. Validation and rollout metrics stay unweighted.
    future_slot_weights: list[float] = field(default_factory=list)

    def validate(self, num_slots: int) -> None:
        """``num_slots`` is model.num_slots: at most that many slots can be masked."""
        w = self.future_slot_weights
        if w:
            if len(w) != num_slots:
                raise ConfigError(f"masking.future_slot_weights has {len(w)} weights for model.num_slots={num_slots}")
            if not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
                raise ConfigError(f"masking.future_slot_weights={w}: finite weights >= 0 with a positive sum")
            if self.future_loss != "mse":
                raise ConfigError("masking.future_slot_weights weighs the plain future MSE: it needs "
                                  "masking.future_loss=mse")
        if self.num_masked < 0:
            raise ConfigError("masking.num_masked must be >= 0")
        top = self.num_masked if self.num_masked_max is None else self.num_masked_max
        if self.num_masked_max is not None and self.num_masked_max < self.num_masked:
            raise ConfigError("masking.num_masked_max must be >= masking.num_masked")
        if top > num_slots:
            raise ConfigError(f"masking: cannot mask {top} of model.num_slots={num_slots} slots")
        if self.mode == "fixed" and self.num_masked_max is not None:
            raise ConfigError("masking.mode=fixed reproduces a fixed set; masking.num_masked_max needs mode=random")


@dataclass(kw_only=True)
class KernelsConfig:
    # Attention of the predictor. "torch": explicit math (the reference, CPU default); "sdpa": torch's
    # scaled_dot_product_attention; "triton" / "flash_attn": GPU kernels. Unavailable -> error, never a
    # silent fallback.
    attention: Literal["torch", "sdpa", "triton", "flash_attn"] = "torch"
    slot_attention: Literal["torch", "triton"] = "torch"
