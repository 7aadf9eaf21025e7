"""Contracts of object-mask sampling: per sample, uniform, deterministic, resume- and rank-consistent; and the
original's fixed set (Q1) for reproduction."""

import numpy as np
import pytest
import torch

from cjepa.masking import MaskSampler, fixed_reference_indices


def test_fixed_mode_reproduces_original_indices():
    """RandomState(42).choice(S, M): S=7 -> {0}, {0,1}, {0,1,5}, {0,1,5,2}; the same for every sample and step."""
    assert fixed_reference_indices(7, 1) == [0]
    assert fixed_reference_indices(7, 2) == [0, 1]
    assert sorted(fixed_reference_indices(7, 3)) == [0, 1, 5]
    assert fixed_reference_indices(7, 4) == [0, 1, 5, 2]
    assert sorted(fixed_reference_indices(4, 2)) == [1, 3]  # the Push-T AP variant draws from the 4 object slots
    s = MaskSampler(7, 3, mode="fixed")
    a, b = s.global_masks(0, 5), s.global_masks(99, 5)
    assert torch.equal(a, b) and (a == a[0]).all() and a[0].nonzero().flatten().tolist() == [0, 1, 5]


def test_random_mode_counts_and_uniformity():
    """Each sample masks exactly M slots; over many draws every slot is masked with frequency M/S."""
    s = MaskSampler(7, 3, mode="random", seed=1)
    masks = torch.cat([s.global_masks(step, 256) for step in range(40)])
    assert (masks.sum(1) == 3).all()
    freq = masks.float().mean(0)
    assert torch.allclose(freq, torch.full((7,), 3 / 7), atol=0.02), freq
    # pairs are uniform too (a set, not a fixed pattern): each of the 21 pairs appears about equally often
    pair = (masks[:, :, None] & masks[:, None, :]).float().mean(0)
    off = pair[~torch.eye(7, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, 3 * 2 / (7 * 6)), atol=0.02)


def test_range_mode_draws_m_uniformly():
    """num_masked..num_masked_max: M is uniform over the range per sample."""
    s = MaskSampler(7, 0, num_masked_max=4, seed=3)
    counts = torch.cat([s.global_masks(step, 500) for step in range(10)]).sum(1)
    hist = torch.bincount(counts, minlength=5).float() / len(counts)
    assert counts.min() == 0 and counts.max() == 4
    assert torch.allclose(hist, torch.full((5,), 0.2), atol=0.03)


def test_deterministic_and_different_across_steps_and_ranks():
    """Same (seed, step) -> same masks; other steps and other ranks' slices differ; rank slices tile the global draw."""
    s = MaskSampler(7, 2, seed=5)
    assert torch.equal(s.global_masks(10, 64), MaskSampler(7, 2, seed=5).global_masks(10, 64))
    assert not torch.equal(s.global_masks(10, 64), s.global_masks(11, 64))
    assert not torch.equal(s.global_masks(10, 64), MaskSampler(7, 2, seed=6).global_masks(10, 64))
    rank0, rank1 = s(10, 64, 0, 32), s(10, 64, 32, 32)
    assert not torch.equal(rank0, rank1)
    assert torch.equal(torch.cat([rank0, rank1]), s.global_masks(10, 64))


def test_zero_masked_and_bad_arguments():
    """M=0 masks nothing; impossible counts are rejected."""
    assert not MaskSampler(5, 0).global_masks(0, 4).any()
    with pytest.raises(ValueError):
        MaskSampler(5, 6)
    with pytest.raises(ValueError):
        MaskSampler(5, 3, num_masked_max=2)


def test_fixed_mode_matches_numpy_directly():
    """Guard against drift: the fixed set is literally numpy's RandomState choice."""
    for S, M in [(7, 4), (8, 4), (6, 2)]:
        expect = np.random.RandomState(42).choice(S, M, replace=False).tolist()
        assert fixed_reference_indices(S, M, 42) == expect
