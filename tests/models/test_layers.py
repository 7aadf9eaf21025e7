"""Transformer pieces (cjepa/models/layers.py): attention capture leaves the forward bit-identical."""

import pytest
import torch

from cjepa.backends.references import attention_reference
from cjepa.models.layers import AttentionCapture, Transformer
from cjepa.models.predictor import MaskedSlotPredictor


def predictor(layout: str, backend: str, dropout: float = 0.0) -> MaskedSlotPredictor:
    torch.manual_seed(0)
    return MaskedSlotPredictor(num_slots=4, slot_dim=16, history_frames=3, pred_frames=2, depth=3, heads=4, mlp_dim=32,
                               dropout=dropout, layout=layout, attention_backend=backend)


@pytest.mark.parametrize("layout", ["cjepa", "reference"])
@pytest.mark.parametrize("backend", ["torch", "sdpa"])
def test_capture_on_or_off_gives_bit_identical_outputs_and_gradients(layout, backend):
    m = predictor(layout, backend, dropout=0.1)  # training mode with dropout: capture must not touch the RNG either
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[False, True, False, False], [True, False, False, True]])
    outs, grads = [], []
    for capture in (None, AttentionCapture()):
        m.zero_grad()
        torch.manual_seed(1)
        out = m(x, masked, capture=capture)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in m.parameters()])
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
    m.eval()
    with torch.no_grad():
        cap = AttentionCapture()
        assert torch.equal(m(x, masked), m(x, masked, capture=cap))
        assert sorted(cap.maps) == [0, 1, 2] and cap.maps[0].shape == (2, 20, 20)


def test_captured_maps_are_the_head_averaged_softmax():
    """The captured map is softmax(q k^T / sqrt(E)) averaged over heads, each row summing to 1; ``layers``
    picks layers (negative from the last), the others are not computed."""
    t = Transformer(16, 2, 4, 4, 32, 0.0, pre_norm=True, backend="sdpa").eval()
    x = torch.randn(2, 7, 16)
    key_mask = torch.ones(2, 7, dtype=torch.bool)
    key_mask[1, -2:] = False
    cap = AttentionCapture(layers=[-1])
    with torch.no_grad():
        t(x, key_mask, capture=cap)
        h = x + t.layers[0][0](x, key_mask)
        h = h + t.layers[0][1](h)
        q, k, v = t.layers[1][0]._qkv(h)
        _, want = attention_reference(q, k, v, key_mask, need_weights=True)
    assert list(cap.maps) == [1]
    assert torch.allclose(cap.maps[1], want.mean(dim=1), atol=1e-6)
    assert torch.allclose(cap.maps[1].sum(-1), torch.ones(2, 7),
                          atol=1e-6) and bool((cap.maps[1][1, :, -2:] == 0).all())
