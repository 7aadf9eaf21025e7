"""The CPU dropout (cjepa/backends/dropout.py): F.dropout's distribution and scaling, seeded, cheaper masks."""

import pytest
import torch
import torch.nn.functional as F

from cjepa.backends.dropout import Dropout, cpu_keep_mask, drop_threshold, dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_expectation_match_p(p):
    """Over 4M elements the dropped fraction is p within 5 standard errors, and the mean is kept (scaling)."""
    torch.manual_seed(0)
    x = torch.ones(2048, 2048)
    y = dropout(x, p)
    n = x.numel()
    rate = float((y == 0).float().mean())
    assert abs(rate - p) < 5 * (p * (1 - p) / n) ** 0.5 + 2**-16
    assert abs(float(y.mean()) - 1.0) < 5 * (p / (1 - p) / n) ** 0.5 + 1e-4
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1.0 / (1.0 - drop_threshold(p) / 2**16)))


def test_masks_follow_the_global_seed_and_differ_between_calls():
    x = torch.randn(3, 5, 7)
    torch.manual_seed(1)
    a, b = dropout(x, 0.3), dropout(x, 0.3)
    torch.manual_seed(1)
    assert torch.equal(dropout(x, 0.3), a)
    assert not torch.equal(a, b)


def test_odd_sizes_bf16_and_gradient():
    """Sizes that are not a multiple of four fields, bf16 inputs, and the gradient is the same mask times scale."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.bfloat16, requires_grad=True)
    y = dropout(x, 0.5)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    y.sum().backward()
    keep = y.detach() != 0
    scale = 1.0 / (1.0 - drop_threshold(0.5) / 2**16)
    assert torch.equal(x.grad, keep.to(torch.bfloat16) * scale)
    assert cpu_keep_mask((7,), 0.25).shape == (7,)


def test_eval_zero_p_and_module():
    x = torch.randn(4, 4)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), F.dropout(x, 1.0))
    m = Dropout(0.2).eval()
    assert m(x) is x and repr(m) == "Dropout(p=0.2, inplace=False)"
    assert not list(m.state_dict())
