"""Contracts of the step batch sampler: deterministic, resumable mid-epoch, rank/accumulation split of one global
batch."""

import pytest

from cjepa.data.sampler import StepBatchSampler


def collect(sampler):
    return [b for b in sampler]


def test_ranks_and_micro_steps_tile_the_global_batch():
    """Over ranks x micro-steps, each global batch is covered exactly once, in the single-process order."""
    single = StepBatchSampler(40, 8, seed=1)
    parts = {r: collect(StepBatchSampler(40, 8, seed=1, rank=r, world_size=2, grad_accum=2)) for r in range(2)}
    single_batches = collect(single)
    for step, batch in enumerate(single_batches):
        pieces = [parts[r][step * 2 + j] for j in range(2) for r in range(2)]
        order = [parts[0][step * 2], parts[1][step * 2], parts[0][step * 2 + 1], parts[1][step * 2 + 1]]
        assert sum(order, []) == batch
        assert sorted(sum(pieces, [])) == sorted(batch)


def test_resume_mid_epoch_continues_the_same_order():
    """set_position(k) yields exactly what an uninterrupted iteration yields from step k."""
    full = collect(StepBatchSampler(50, 5, seed=3))
    s = StepBatchSampler(50, 5, seed=3)
    s.set_position(4)
    assert collect(s) == full[4:]
    s.set_position(10 + 3)  # epoch 1, batch 3
    e1 = StepBatchSampler(50, 5, seed=3)
    e1.set_position(10)
    assert collect(s) == collect(e1)[3:]


def test_epochs_differ_and_drop_last():
    """Each epoch is a new permutation; the partial last batch is dropped."""
    s = StepBatchSampler(23, 5, seed=0)
    assert s.steps_per_epoch == 4
    e0 = collect(s)
    s.set_position(4)
    assert collect(s) != e0
    assert all(len(b) == 5 for b in e0)


def test_bad_sizes():
    """Indivisible batches and too little data are errors."""
    with pytest.raises(ValueError, match="divisible"):
        StepBatchSampler(100, 10, seed=0, world_size=3)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        StepBatchSampler(4, 10, seed=0)
