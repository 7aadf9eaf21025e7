"""Cross-entropy method: finds the optimum of a known cost, is seeded, and refuses bad costs."""

import pytest
import torch

from cjepa.plan.cem import CEM


def quadratic(target: torch.Tensor, scale: torch.Tensor):
    return lambda x: (((x - target) * scale) ** 2).sum(dim=(1, 2))


def test_cem_finds_the_minimum_of_a_quadratic():
    """With the protocol's settings (300 samples, top 30, 30 iterations) the plan converges to the optimum of
    an anisotropic quadratic over a (5 blocks x 10) action sequence."""
    g = torch.Generator().manual_seed(0)
    target = torch.randn(5, 10, generator=g) * 0.8
    scale = torch.rand(5, 10, generator=g) + 0.5
    res = CEM(num_samples=300, topk=30, iterations=30, seed=0).solve(quadratic(target, scale), 5, 10)
    assert (res.mean - target).abs().max() < 0.15  # from errors of ~1-2 at the start (50 dimensions)
    assert res.std.max() < 0.05  # the distribution collapsed onto it
    assert res.cost_history[-1] < 1e-3 * res.cost_history[0]
    assert len(res.cost_history) == 30 and res.seconds > 0
    # the per-iteration trace: the cheapest candidate is never worse than the elites' mean, and the recorded
    # spread is that of the distribution each iteration refits (its last value is the returned std's mean)
    assert all(b <= e for b, e in zip(res.best_history, res.cost_history)) and len(res.best_history) == 30
    assert res.std_history[-1] == pytest.approx(float(res.std.mean())) and res.std_history[0] > 10 * res.std_history[-1]


def test_cem_is_reproducible_and_warm_starts():
    """Same seed -> same plan; a warm start at the optimum stays there in one iteration (sample 0 = mean)."""
    target = torch.full((3, 4), 0.3)
    cost = quadratic(target, torch.ones(3, 4))
    a = CEM(num_samples=50, topk=5, iterations=3, seed=7).solve(cost, 3, 4)
    b = CEM(num_samples=50, topk=5, iterations=3, seed=7).solve(cost, 3, 4)
    assert torch.equal(a.mean, b.mean)
    seen = []

    def spy(x):
        seen.append(x[0].clone())
        return cost(x)

    CEM(num_samples=50, topk=5, iterations=1, seed=0).solve(spy, 3, 4, init_mean=target[:2])
    assert torch.equal(seen[0][:2], target[:2]) and torch.equal(seen[0][2], torch.zeros(4))  # padded with zeros


def test_cem_rejects_bad_costs_and_settings():
    """Wrong cost shapes, NaN costs and impossible elite counts fail loudly."""
    cem = CEM(num_samples=8, topk=2, iterations=1)
    with pytest.raises(ValueError, match=r"\(8,\) costs"):
        cem.solve(lambda x: torch.zeros(3), 2, 2)
    with pytest.raises(FloatingPointError, match="NaN"):
        cem.solve(lambda x: torch.full((8,), float("nan")), 2, 2)
    with pytest.raises(ValueError, match="topk"):
        CEM(num_samples=4, topk=5)
