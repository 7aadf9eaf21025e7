"""Joining the JSONL records of one evaluation that was split over processes (``--skip``/``--episodes`` ranges).

Each process writes one record with its episodes; the evaluation is the union of their drawn pairs, each pair
exactly once. Light on purpose (no torch import): the summary scripts only read JSON.
"""

from __future__ import annotations

from typing import Iterable, Sequence


def join_by_pair(parts: Iterable[tuple[Sequence[int], Sequence[dict]]], label: str) -> dict[int, dict]:
    """``(pair indices, episodes)`` of each record -> ``{drawn pair index: episode}``, in record order.

    A pair in two records (overlapping ranges, or one range run twice) is an error naming ``label`` and the pairs:
    counting it twice would inflate both the successes and the episodes."""
    joined: dict[int, dict] = {}
    for indices, episodes in parts:
        twice = sorted(set(indices) & joined.keys())
        if twice:
            raise ValueError(f"{label}: drawn pairs {twice} are in more than one record")
        joined.update(zip(indices, episodes))
    return joined
