"""load_checked: a checkpoint that does not fit the model is one error naming the differing keys and shapes."""

import pytest
import torch

from cjepa.errors import UserError
from cjepa.utils.state_dict import StateDictMismatch, load_checked


def _net(width: int, extra: bool = False) -> torch.nn.Module:
    layers = [torch.nn.Linear(4, width), torch.nn.Linear(width, 2)]
    return torch.nn.Sequential(*layers, *([torch.nn.Linear(2, 2)] if extra else []))


def test_fitting_state_loads_exactly():
    a, b = _net(8), _net(8)
    load_checked(b, a.state_dict(), "a.pt")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_other_size_names_keys_and_both_shapes():
    """torch raises a multi-line RuntimeError for this even with strict=False; here: one line, keys and shapes."""
    with pytest.raises(StateDictMismatch) as err:
        load_checked(_net(8), _net(16).state_dict(), "small.pt", hint="model.slot_dim=8")
    msg = str(err.value)
    assert "\n" not in msg and "small.pt" in msg and "model.slot_dim=8" in msg
    assert "0.weight (16, 4) in the checkpoint vs (8, 4) in the model" in msg
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)


def test_missing_and_unexpected_keys_are_named():
    with pytest.raises(StateDictMismatch, match=r"missing keys: 2\.weight, 2\.bias"):
        load_checked(_net(8, extra=True), _net(8).state_dict(), "x.pt")
    with pytest.raises(StateDictMismatch, match=r"unexpected keys: 2\.weight, 2\.bias"):
        load_checked(_net(8), _net(8, extra=True).state_dict(), "x.pt")
