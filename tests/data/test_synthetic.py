"""Contracts of the built-in slot world: real dynamics (momentum, collisions), determinism, slot layout."""

import numpy as np

from cjepa.data.synthetic import SlotEmbedding, make_synthetic_split, simulate_billiards, synthetic_video_slots


def test_collisions_conserve_momentum_and_energy():
    """Elastic collisions between discs conserve total momentum and kinetic energy (walls aside)."""
    v = simulate_billiards(5, 80, np.random.default_rng(2))
    assert v.collisions, "expected at least one collision in 80 frames"
    mass = v.radii**2
    energy = (0.5 * mass[None, :, None] * v.velocities**2).sum(axis=(1, 2))
    assert np.allclose(energy, energy[0], rtol=1e-6)
    assert (v.positions >= v.radii[None, :,
                                   None] - 1e-9).all() and (v.positions <= 1 - v.radii[None, :, None] + 1e-9).all()


def test_deterministic_and_split_dependent():
    """Same (seed, split) -> identical slots; another split or seed -> different videos."""
    kw = dict(num_slots=6, slot_dim=16, num_frames=20, min_objects=2, max_objects=4, noise=0.01)
    a = make_synthetic_split(3, seed=0, split="train", **kw)
    b = make_synthetic_split(3, seed=0, split="train", **kw)
    c = make_synthetic_split(3, seed=0, split="val", **kw)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train_00000"], c["val_00000"])


def test_objects_fill_slots_and_empty_slots_hold_the_empty_code():
    """Objects occupy a random subset of slots for the whole video; the others hold the fixed empty code."""
    emb = SlotEmbedding(8)
    slots, video, s2o = synthetic_video_slots(3, 5, 10, 8, 0.0, np.random.default_rng(0), emb)
    assert slots.shape == (10, 5, 8)
    assert (s2o >= 0).sum() == 3
    for s in np.nonzero(s2o < 0)[0]:
        assert np.allclose(slots[:, s], emb.empty)
    obj = emb(video)
    for s in np.nonzero(s2o >= 0)[0]:
        assert np.allclose(slots[:, s], obj[:, s2o[s]], atol=1e-6)
