"""Which object slots are masked in the history, per sample.

``random`` mode (the default) draws a fresh masked set for every sample of every step, uniformly over
slots, with M fixed or drawn from a range (the paper's figure says M ~ Uniform). The draw is a pure function
of (seed, step, global sample index): ranks slice the same global draw, so a 2-rank DDP step masks exactly
what one process masks on the doubled batch, ranks see different sets, and resuming at any step reproduces
the masks of an uninterrupted run without storing any generator state.

``fixed`` mode reproduces the original (Q1): ``np.random.RandomState(seed).choice(S, M, replace=False)`` is
recomputed on every call, so the same slots are masked for every sample of the whole run. Use it only to
reproduce published numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

# Large odd multipliers keep (seed, step) streams apart; any injective mix would do.
_STEP_MIX = 1_000_003


def fixed_reference_indices(num_slots: int, num_masked: int, seed: int = 42) -> list[int]:
    """The original's masked indices: a fresh RandomState(seed) choosing M of range(S) without replacement."""
    if num_masked == 0:
        return []
    return [int(i) for i in np.random.RandomState(seed).choice(num_slots, num_masked, replace=False)]


@dataclass
class MaskSampler:
    num_slots: int
    num_masked: int
    num_masked_max: Optional[int] = None
    mode: str = "random"
    seed: int = 42

    def __post_init__(self):
        top = self.num_masked if self.num_masked_max is None else self.num_masked_max
        if not 0 <= self.num_masked <= top <= self.num_slots:
            raise ValueError(
                f"cannot mask {self.num_masked}..{top} of {self.num_slots} slots"
            )
        if self.mode not in ("random", "fixed"):
            raise ValueError(f"unknown masking mode {self.mode!r}")

    @classmethod
    def from_config(cls, masking_cfg, num_slots: int) -> "MaskSampler":
        return cls(
            num_slots=num_slots,
            num_masked=masking_cfg.num_masked,
            num_masked_max=masking_cfg.num_masked_max,
            mode=masking_cfg.mode,
            seed=masking_cfg.seed,
        )

    def global_masks(self, step: int, global_batch: int) -> torch.Tensor:
        """(global_batch, S) bool masks for one optimizer step, identical on every rank."""
        S = self.num_slots
        if self.mode == "fixed":
            row = torch.zeros(S, dtype=torch.bool)
            row[fixed_reference_indices(S, self.num_masked, self.seed)] = True
            return row.expand(global_batch, S).clone()
        gen = torch.Generator().manual_seed(self.seed * _STEP_MIX + step)
        # A uniformly random ordering of the slots per sample; the first M of it are masked.
        ranks = torch.rand(global_batch, S, generator=gen).argsort(dim=1).argsort(dim=1)  # (B, S) rank of slot
        if self.num_masked_max is None:
            m = torch.full((global_batch, 1), self.num_masked)
        else:
            m = torch.randint(self.num_masked, self.num_masked_max + 1, (global_batch, 1), generator=gen)
        return ranks < m

    def __call__(self, step: int, global_batch: int, start: int, count: int) -> torch.Tensor:
        """Masks (count, S) of global samples [start, start + count) at this step."""
        return self.global_masks(step, global_batch)[start : start + count]
