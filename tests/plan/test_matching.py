"""Batched slot matching equals scipy's Hungarian solution; reordering aligns slots and spares aux nodes."""

import itertools

import pytest
import torch

from cjepa.plan.matching import (
    best_assignment,
    hungarian_reference,
    matched_mse,
    permutations,
    reorder_reference,
    reorder_to_match,
)


@pytest.mark.parametrize("S", [1, 2, 3, 4, 5, 6, 7])
def test_batched_matching_equals_scipy(S):
    """Random cases: the default route (the permutation enumeration up to DEFAULT_MAX_PERM_SLOTS = 7, CLEVRER's slot
    count, with its 5,040 permutations) finds the same optimal cost and assignment as scipy."""
    g = torch.Generator().manual_seed(S)
    a = torch.randn(7, 5, S, 9, generator=g, dtype=torch.float64)
    b = torch.randn(7, 5, S, 9, generator=g, dtype=torch.float64)
    cost, assign = best_assignment(a, b)
    ref_cost, ref_assign = hungarian_reference(a, b)
    assert cost.shape == (7, 5) and assign.shape == (7, 5, S)
    torch.testing.assert_close(cost, ref_cost, rtol=1e-12, atol=1e-12)
    assert torch.equal(assign, ref_assign)  # continuous random data: the optimum is unique


def test_reorder_for_seven_slots_equals_the_scipy_loop():
    """Re-aligning CLEVRER-sized frames (7 object slots + 2 aux nodes) with the default settings gives exactly what
    the original's per-item scipy loop gives."""
    g = torch.Generator().manual_seed(7)
    slots = torch.randn(6, 2, 9, 5, generator=g, dtype=torch.float64)
    ref = torch.randn(6, 2, 9, 5, generator=g, dtype=torch.float64)
    assert torch.equal(reorder_to_match(slots, ref, 7), reorder_reference(slots, ref, 7))


def test_scipy_fallback_above_the_enumeration_limit():
    """Past max_perm_slots the same answer comes from scipy per item."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, 4, generator=g), torch.randn(6, 5, 4, generator=g)
    c1, a1 = best_assignment(a, b, max_perm_slots=7)
    c2, a2 = best_assignment(a, b, max_perm_slots=3)
    torch.testing.assert_close(c1, c2)
    assert torch.equal(a1, a2)


def test_matched_mse_ignores_slot_order():
    """The cost of a permuted copy is 0, and permuting the goal never changes the cost."""
    g = torch.Generator().manual_seed(1)
    pred, goal = torch.randn(10, 4, 8, generator=g), torch.randn(10, 4, 8, generator=g)
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(matched_mse(pred, pred[:, perm]), torch.zeros(10), atol=1e-7)
    torch.testing.assert_close(matched_mse(pred, goal), matched_mse(pred, goal[:, perm]))
    brute = (
        torch.stack([((pred - goal[:, list(p)]) ** 2).mean((1, 2)) for p in itertools.permutations(range(4))])
        .min(0)
        .values
    )
    torch.testing.assert_close(matched_mse(pred, goal), brute)


def test_reorder_recovers_a_shuffle_and_keeps_aux_nodes():
    """Shuffled object slots are put back in the reference order per item; proprio/action nodes stay put."""
    g = torch.Generator().manual_seed(2)
    ref = torch.randn(6, 3, 6, 5, generator=g)  # (B, T, S+2, D): 4 object slots + 2 aux nodes
    perms = [torch.randperm(4, generator=g) for _ in range(6)]
    shuffled = ref.clone()
    for i, p in enumerate(perms):
        shuffled[i, :, :4] = ref[i, :, p]
    noisy = shuffled + 0.01 * torch.randn(shuffled.shape, generator=g)
    out = reorder_to_match(noisy, ref, match_slots=4)
    torch.testing.assert_close(out[:, :, :4], ref[:, :, :4], atol=0.05, rtol=0)
    torch.testing.assert_close(out[:, :, 4:], noisy[:, :, 4:])
    for i, p in enumerate(perms):  # exact: the reordered slot j is the noisy copy of reference slot j
        inv = torch.argsort(p)
        torch.testing.assert_close(out[i, :, :4], noisy[i, :, inv])


def test_permutation_table_and_shape_errors():
    """S! rows of distinct permutations; mismatched shapes are refused."""
    p = permutations(4, "cpu")
    assert p.shape == (24, 4) and len({tuple(r.tolist()) for r in p}) == 24
    with pytest.raises(ValueError, match="one shape"):
        best_assignment(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4))


def test_weighted_matching_scales_goal_slots_but_keeps_the_unweighted_assignment():
    """weights (S,) scale each goal slot's matched error; all ones is the unweighted cost; the assignment is the
    unweighted one (weighting inside the matching would let a light goal slot attract another object's slot:
    tests/plan/test_world_model.py::test_agent_weight_scales_the_goal_agent_slot)."""
    torch.manual_seed(0)
    a, b = torch.randn(5, 4, 8), torch.randn(5, 4, 8)
    torch.testing.assert_close(matched_mse(a, b, weights=torch.ones(4)), matched_mse(a, b))
    goal = torch.tensor([[[0.0], [4.0]]])  # (1, 2, 1)
    pred = torch.tensor([[[1.0], [1.5]]])  # identity 1 + 6.25 < swap 2.25 + 9
    total, assign = best_assignment(pred, goal, weights=torch.tensor([0.01, 1.0]))
    assert assign.tolist() == [[0, 1]] and float(total) == pytest.approx(0.01 * 1.0 + 6.25)
    pred = torch.tensor([[[3.0], [0.5]]])  # swap 1 + 0.25 < identity 9 + 12.25
    total, assign = best_assignment(pred, goal, weights=torch.tensor([0.5, 1.0]))
    assert assign.tolist() == [[1, 0]] and float(total) == pytest.approx(1.0 * 1.0 + 0.5 * 0.25)
    with pytest.raises(ValueError, match="slot weights"):
        matched_mse(a, b, weights=torch.ones(3))
