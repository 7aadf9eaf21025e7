"""Load a state_dict into a model, failing with one line that says which keys and shapes differ.

torch's own ``load_state_dict`` raises a multi-line RuntimeError for shape mismatches even with ``strict=False``;
a checkpoint of another model size (slot_dim, depth, heads...) is a user error, so it is compared first and
reported by key.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cjepa.errors import UserError


class StateDictMismatch(UserError, ValueError):
    """A checkpoint's tensors do not fit the model built from the config (other size, layout or kind); a ValueError
    too, as the loaders raised before."""


def _first(items: list[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_checked(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, hint: str = "") -> None:
    """``model.load_state_dict(state)`` (strict) after checking names and shapes; ``source`` names the checkpoint."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the checkpoint vs {tuple(own[k].shape)} in the model"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"shapes differ: {_first(shapes, 3)}")
        if missing:
            parts.append(f"missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_first(unexpected)}")
        raise StateDictMismatch(
            f"checkpoint {source} does not fit the model{f' ({hint})' if hint else ''}: {'; '.join(parts)} "
            "(a checkpoint of another model size or layout?)"
        )
    model.load_state_dict(state, strict=True)
