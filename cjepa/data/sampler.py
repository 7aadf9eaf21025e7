"""Deterministic, rank-sharded, resumable batch order.

One global order per epoch (a permutation drawn from (seed, epoch)) is cut into global batches of
``global_batch`` items (the last partial batch is dropped, as the original's ``drop_last=True``). Global
batch number k is then split into ``grad_accum * world_size`` micro-batches: micro-step j of rank r takes
slice ``(j * world_size + r) * micro``. So the data a step sees does not depend on how it is spread over ranks
and micro-steps (DDP on 2 ranks == one process on the doubled batch), and the position to resume from is just
the optimizer step.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (index lists) from global step ``start_step`` to the epoch's end."""

    def __init__(
        self,
        num_items: int,
        global_batch: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        shuffle: bool = True,
    ):
        if global_batch % (world_size * grad_accum):
            raise ValueError(f"global batch {global_batch} not divisible by "
                             f"world_size*grad_accum={world_size * grad_accum}")
        if num_items < global_batch:
            raise ValueError(f"{num_items} samples are fewer than one global batch of {global_batch}")
        self.num_items, self.global_batch = num_items, global_batch
        self.seed, self.rank, self.world_size, self.grad_accum, self.shuffle = (
            seed,
            rank,
            world_size,
            grad_accum,
            shuffle,
        )
        self.micro = global_batch // (world_size * grad_accum)
        self.steps_per_epoch = num_items // global_batch
        self.start_step = 0

    def set_position(self, step: int) -> None:
        """Resume at global optimizer step ``step`` (any step, also mid-epoch)."""
        self.start_step = step

    def epoch_order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_items)
        gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return torch.randperm(self.num_items, generator=gen)

    def micro_slice(self, micro_step: int) -> slice:
        start = (micro_step * self.world_size + self.rank) * self.micro
        return slice(start, start + self.micro)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, k0 = divmod(self.start_step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        for k in range(k0, self.steps_per_epoch):
            batch = order[k * self.global_batch : (k + 1) * self.global_batch]
            for j in range(self.grad_accum):
                yield batch[self.micro_slice(j)].tolist()

    def __len__(self) -> int:
        epoch, k0 = divmod(self.start_step, self.steps_per_epoch)
        return (self.steps_per_epoch - k0) * self.grad_accum
