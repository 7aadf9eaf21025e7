"""Slot attention module and slot initialisers (cjepa/models/slot_attention.py)."""

import pytest
import torch

import cjepa.models.slot_attention as sa_mod
from cjepa.models.slot_attention import LearnedSlotInit, RandomSlotInit, SlotAttention
from tests.helpers import assert_close_verbose
from tests.kernels.common import compile_recording, graph_targets, requires_triton_runtime


def _module(gru_hidden="normed", mlp_hidden=0, eps=1e-8, dim=8, inp=6):
    torch.manual_seed(0)
    return SlotAttention(inp, dim, iters=3, eps=eps, gru_hidden=gru_hidden, mlp_hidden=mlp_hidden)


@pytest.mark.parametrize("gru_hidden,mlp_hidden", [("normed", 0), ("raw", 16)])
def test_permutation_equivariance_over_slots(gru_hidden, mlp_hidden):
    """Permuting the input slots permutes the output slots and attention rows identically (no slot is special)."""
    m = _module(gru_hidden, mlp_hidden)
    slots, inputs = torch.randn(2, 5, 8), torch.randn(2, 11, 6)
    perm = torch.tensor([3, 0, 4, 1, 2])
    out, attn = m(slots, inputs)
    out_p, attn_p = m(slots[:, perm], inputs)
    assert_close_verbose(out_p, out[:, perm], 1e-5, 1e-5, "slots")
    assert_close_verbose(attn_p, attn[:, perm], 1e-6, 1e-5, "attention")


def test_attention_is_a_softmax_over_slots():
    """Each input distributes exactly one unit of attention over the slots (softmax over the slot axis)."""
    m = _module()
    _, attn = m(torch.randn(3, 4, 8), torch.randn(3, 9, 6))
    assert attn.shape == (3, 4, 9)
    assert_close_verbose(attn.sum(dim=1), torch.ones(3, 9), 1e-6, 0, "sum over slots")
    assert (attn >= 0).all()


def test_one_step_matches_hand_computation():
    """A step = LN(slots) -> q; softmax over slots; +eps, renormalise over inputs; weighted mean of v; GRU(update,
    hidden)."""
    for hidden_mode in ("normed", "raw"):
        m = _module(hidden_mode, eps=1e-3)
        slots, inputs = torch.randn(2, 3, 8), torch.randn(2, 7, 6)
        x = torch.nn.functional.layer_norm(inputs, (6,), m.norm_inputs.weight, m.norm_inputs.bias)
        k, v = x @ m.to_k.weight.T, x @ m.to_v.weight.T
        n = torch.nn.functional.layer_norm(slots, (8,), m.norm_slots.weight, m.norm_slots.bias)
        q = n @ m.to_q.weight.T
        logits = torch.einsum("bsd,bnd->bsn", q, k) / 8**0.5
        a = torch.softmax(logits, dim=1)
        w = (a + 1e-3) / (a + 1e-3).sum(dim=2, keepdim=True)
        upd = w @ v
        h = n if hidden_mode == "normed" else slots
        expected = m.gru(upd.reshape(6, 8), h.reshape(6, 8)).view(2, 3, 8)
        got, attn = m.step(slots, *m.project_inputs(inputs))
        assert_close_verbose(got, expected, 1e-5, 1e-5, f"slots ({hidden_mode})")
        assert_close_verbose(attn, a, 1e-6, 1e-5, "attention")


def test_gru_hidden_option_changes_the_update():
    """'normed' (VideoSAUR, Q14) and 'raw' (SAVi) hidden states give different slots from the same weights."""
    a, b = _module("normed"), _module("raw")
    b.load_state_dict(a.state_dict())
    slots, inputs = torch.randn(1, 3, 8) * 3, torch.randn(1, 5, 6)
    assert not torch.allclose(a(slots, inputs)[0], b(slots, inputs)[0], atol=1e-3)


def test_inactive_slots_take_no_attention_and_stay_unchanged():
    """slot_mask: masked slots get zero attention, keep their value, and the active slots evolve as if alone."""
    m = _module(mlp_hidden=16)
    slots, inputs = torch.randn(2, 5, 8), torch.randn(2, 10, 6)
    mask = torch.tensor([[True, False, True, True, False], [True, True, True, False, True]])
    out, attn = m(slots, inputs, slot_mask=mask)
    assert (attn[~mask] == 0).all()
    assert_close_verbose(attn.sum(dim=1), torch.ones(2, 10), 1e-6, 0, "sum over active slots")
    assert torch.equal(out[~mask], slots[~mask])
    for b in range(2):
        alone, _ = m(slots[b : b + 1, mask[b]], inputs[b : b + 1])
        assert_close_verbose(out[b, mask[b]], alone[0], 1e-5, 1e-5, f"active slots of sample {b}")


def test_update_goes_through_the_ops_dispatch(monkeypatch):
    """The update step calls cjepa.backends.slot_update.slot_attention with the configured backend and eps."""
    calls = []
    real = sa_mod.slot_attention

    def spy(q, k, v, **kw):
        calls.append(kw)
        return real(q, k, v, **{**kw, "backend": "torch"})

    monkeypatch.setattr(sa_mod, "slot_attention", spy)
    m = SlotAttention(6, 8, iters=2, eps=1e-6, backend="triton")
    m(torch.randn(1, 3, 8), torch.randn(1, 4, 6))
    assert len(calls) == 2
    assert all(c["backend"] == "triton" and c["eps"] == 1e-6 for c in calls)


def test_random_init_is_seeded_and_per_row_generators_are_batch_independent():
    """RandomSlotInit: same generator seed -> same slots; per-row generators give each row its own stream."""
    init = RandomSlotInit(4, 8)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(init(3, g1), init(3, g2))
    rows = [torch.Generator().manual_seed(s) for s in (1, 2)]
    both = init(2, rows)
    alone = init(1, [torch.Generator().manual_seed(2)])
    assert torch.equal(both[1], alone[0])
    assert init.log_std.exp().allclose(torch.full((1, 1, 8), 8**-0.5))


def test_learned_init_repeats_the_parameter():
    """LearnedSlotInit returns the same learned slots for every batch row (SAVi's init_latents)."""
    init = LearnedSlotInit(3, 4)
    out = init(2)
    assert out.shape == (2, 3, 4) and torch.equal(out[0], out[1]) and torch.equal(out[0], init.slots[0])


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_compile_fullgraph_through_the_slot_attention_backend(backend):
    """torch.compile(fullgraph=True) traces the slot-attention module (two iterations, a slot mask) in one graph
    through its backend (the Triton kernel as the registered op cjepa::slot_attention_fwd, no graph break), and the
    compiled module's slots, attention and parameter gradients match the uncompiled torch-backend module's."""
    eager = _module()
    compiled_module = SlotAttention(6, 8, iters=3, backend=backend)
    compiled_module.load_state_dict(eager.state_dict())
    slots, inputs = torch.randn(2, 3, 8), torch.randn(2, 20, 6)
    slot_mask = torch.tensor([[True, True, False], [True, True, True]])
    graphs: list = []
    compiled = torch.compile(compiled_module, fullgraph=True, backend=compile_recording(graphs))
    outs = {}
    for name, module, fn in (("eager", eager, eager), ("compiled", compiled_module, compiled)):
        new_slots, attn = fn(slots, inputs, slot_mask=slot_mask)
        (new_slots.square().sum() + attn.square().sum()).backward()
        outs[name] = (new_slots, attn, {n: p.grad for n, p in module.named_parameters()})
    assert_close_verbose(outs["compiled"][0], outs["eager"][0], 1e-5, 1e-5, "slots")
    assert_close_verbose(outs["compiled"][1], outs["eager"][1], 1e-5, 1e-5, "attention")
    for n, g in outs["eager"][2].items():
        assert_close_verbose(outs["compiled"][2][n], g, 1e-5, 1e-5, f"grad {n}")
    assert len(graphs) == 1
    if backend == "triton":
        assert "cjepa.slot_attention_fwd.default" in graph_targets(graphs)
