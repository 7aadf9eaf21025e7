"""Slot matching for planning costs and rollouts, batched over every candidate at once.

Slots come without a fixed order, so a prediction is compared with a goal (or re-aligned with the previous
frame) under the best one-to-one assignment of slots: minimise sum_s ||a_s - b_perm(s)||^2.

The original solves one ``scipy.optimize.linear_sum_assignment`` per candidate and per rollout step in Python
loops on the host (300 candidates x 6 calls x 30 CEM iterations per plan; Q13). For the small slot counts of
Push-T (4) and CLEVRER (7) the assignment problem is tiny, so we enumerate all S! permutations once and score
them for all candidates in one gather + sum on the accelerator: (B, S, S) squared-distance matrices ->
(B, S!, S) picked entries -> (B, S!) totals -> argmin. S! is 24 for S = 4 and 5,040 for S = 7, which stays
cheaper than a host round trip per candidate. Above ``max_perm_slots`` we fall back to scipy per item.

:func:`hungarian_reference` is the scipy version (the test oracle and the benchmark's baseline).
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Optional

import numpy as np
import torch

DEFAULT_MAX_PERM_SLOTS = 7


@lru_cache(maxsize=16)
def _permutations_cpu(num_slots: int) -> torch.Tensor:
    return torch.tensor(list(itertools.permutations(range(num_slots))), dtype=torch.long)  # (S!, S)


_DEVICE_PERMS: dict[tuple[int, str], torch.Tensor] = {}


def permutations(num_slots: int, device) -> torch.Tensor:
    """All permutations of range(S) as a (S!, S) long tensor on ``device`` (cached)."""
    key = (num_slots, str(device))
    if key not in _DEVICE_PERMS:
        _DEVICE_PERMS[key] = _permutations_cpu(num_slots).to(device)
    return _DEVICE_PERMS[key]


def pairwise_sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., S, D), (..., S, D) -> (..., S, S) with [i, j] = ||a_i - b_j||^2 (explicit difference: exact, unlike
    the |a|^2 + |b|^2 - 2ab expansion, so costs agree with the reference to float rounding)."""
    return (a.unsqueeze(-2) - b.unsqueeze(-3)).pow(2).sum(-1)


def best_assignment(a: torch.Tensor, b: torch.Tensor, max_perm_slots: int = DEFAULT_MAX_PERM_SLOTS,
                    weights: Optional[torch.Tensor] = None):
    """Optimal matching of the slots of ``a`` to those of ``b``, batched over leading dims.

    Returns (total squared error (...,), assignment (..., S) long) where slot i of ``a`` pairs with slot
    ``assignment[i]`` of ``b``. ``weights`` (S,) scales the error of each slot of ``b`` in the total (a goal
    whose slots matter unequally); the assignment itself stays the unweighted one, so that a cheap weight on one
    goal slot cannot lure another object's slot onto it.
    """
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"slot matching needs two (..., S, D) tensors of one shape; got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    S = a.shape[-2]
    lead = a.shape[:-2]
    cost = pairwise_sq_dist(a.reshape(-1, S, a.shape[-1]), b.reshape(-1, S, b.shape[-1]))  # (N, S, S)
    if weights is not None and weights.shape != (S,):
        raise ValueError(f"slot weights must be ({S},), got {tuple(weights.shape)}")
    if S > max_perm_slots:
        total, assign = _scipy_assign(cost)
    else:
        perms = permutations(S, cost.device)  # (P, S)
        rows = torch.arange(S, device=cost.device).expand_as(perms)  # (P, S)
        totals = cost[:, rows, perms].sum(-1)  # (N, P)
        total, idx = totals.min(dim=1)
        assign = perms[idx]  # (N, S)
    if weights is not None:  # the matched pairs' errors, each scaled by its goal slot's weight
        total = (cost.gather(2, assign.unsqueeze(-1)).squeeze(-1) * weights.to(cost)[assign]).sum(-1)
    return total.reshape(lead), assign.reshape(*lead, S)


def _scipy_assign(cost: torch.Tensor):
    from scipy.optimize import linear_sum_assignment

    c = cost.detach().double().cpu().numpy()
    assign = np.empty(c.shape[:2], dtype=np.int64)
    for n in range(c.shape[0]):
        _, col = linear_sum_assignment(c[n])
        assign[n] = col
    a = torch.from_numpy(assign).to(cost.device)
    total = cost.gather(2, a.unsqueeze(-1)).squeeze(-1).sum(-1)
    return total, a


def matched_mse(pred: torch.Tensor, goal: torch.Tensor, max_perm_slots: int = DEFAULT_MAX_PERM_SLOTS,
                weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared error over S x D after the best slot matching (the original's ``hungarian_cost``); with
    ``weights`` (S,), each goal slot's error scaled by its weight (still divided by S x D)."""
    total, _ = best_assignment(pred, goal, max_perm_slots, weights)
    return total / (pred.shape[-2] * pred.shape[-1])


def reorder_to_match(slots: torch.Tensor, reference: torch.Tensor, match_slots: int | None = None,
                     max_perm_slots: int = DEFAULT_MAX_PERM_SLOTS) -> torch.Tensor:
    """Permute ``slots`` (..., N, D) so that position j holds the slot matched to ``reference`` slot j.

    Only the first ``match_slots`` entries (object slots) take part in the matching and are permuted; the rest
    (Push-T's proprio and action nodes) stay in place. The original's ``reorder_slots_to_match_AP``.
    """
    S = slots.shape[-2] if match_slots is None else match_slots
    objs, ref = slots[..., :S, :], reference[..., :S, :]
    _, assign = best_assignment(objs, ref, max_perm_slots)  # objs[i] pairs with ref[assign[i]]
    inverse = torch.argsort(assign, dim=-1)  # position j <- slot i with assign[i] == j
    reordered = torch.gather(objs, -2, inverse.unsqueeze(-1).expand_as(objs))
    return torch.cat([reordered, slots[..., S:, :]], dim=-2) if S < slots.shape[-2] else reordered


def reorder_reference(slots: torch.Tensor, reference: torch.Tensor, match_slots: int) -> torch.Tensor:
    """:func:`reorder_to_match` computed the original's way: one scipy assignment per item in a Python loop,
    each cost matrix brought to the host (``reorder_slots_to_match_AP``). slots, reference: (B, T, N, D)."""
    from scipy.optimize import linear_sum_assignment

    B, T = slots.shape[:2]
    out = slots.clone()
    for b in range(B):
        for t in range(T):
            c = (slots[b, t, :match_slots].unsqueeze(1) - reference[b, t, :match_slots].unsqueeze(0)).pow(2).sum(-1)
            row, col = linear_sum_assignment(c.detach().cpu().numpy())
            inverse = torch.empty(match_slots, dtype=torch.long)
            inverse[torch.as_tensor(col)] = torch.as_tensor(row)
            out[b, t, :match_slots] = slots[b, t, inverse.to(slots.device)]
    return out


def hungarian_reference(pred: torch.Tensor, goal: torch.Tensor):
    """scipy ``linear_sum_assignment`` per item in a Python loop (how the original computes it).

    Returns (total squared error (...,), assignment (..., S)) like :func:`best_assignment`.
    """
    from scipy.optimize import linear_sum_assignment

    S, D = pred.shape[-2:]
    p = pred.detach().reshape(-1, S, D)
    g = goal.detach().reshape(-1, S, D)
    totals = torch.empty(p.shape[0], dtype=pred.dtype)
    assign = torch.empty(p.shape[0], S, dtype=torch.long)
    for n in range(p.shape[0]):
        c = (p[n].unsqueeze(1) - g[n].unsqueeze(0)).pow(2).sum(-1)
        row, col = linear_sum_assignment(c.cpu().numpy())
        assign[n] = torch.as_tensor(col)
        totals[n] = c[torch.as_tensor(row), torch.as_tensor(col)].sum().cpu()
    return totals.reshape(pred.shape[:-2]).to(pred.device), assign.reshape(*pred.shape[:-1]).to(pred.device)
