"""Contracts of the C-JEPA predictor: token grid, shapes, reference layout = the original module, inference."""

import json

import pytest
import torch

from cjepa.config import load_config
from cjepa.models.predictor import MaskedSlotPredictor, PushTPredictor, build_predictor
from tests.helpers import REPO, assert_close_verbose
from tests.kernels.common import compile_recording, graph_targets, requires_triton_runtime

FIXTURES = REPO / "tests" / "fixtures"


def tiny(**kw):
    base = dict(num_slots=4, slot_dim=16, history_frames=3, pred_frames=2, depth=2, heads=2, mlp_dim=32, dropout=0.0)
    base.update(kw)
    return MaskedSlotPredictor(**base)


@pytest.mark.parametrize("layout", ["cjepa", "reference"])
def test_forward_and_inference_shapes(layout):
    """forward: (B, T_h, S, D) -> (B, T_h + T_p, S, D); inference -> (B, T_p, S, D), also from fewer history frames."""
    m = tiny(layout=layout)
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[True, False, False, False], [False, False, True, True]])
    assert m(x, masked).shape == (2, 5, 4, 16)
    assert m.inference(x).shape == (2, 2, 4, 16)
    assert m.inference(x[:, :1]).shape == (2, 2, 4, 16)
    assert m.inference(x[:, :, :3]).shape == (2, 2, 3, 16)  # fewer slots: no slot-index embedding


def test_pusht_variant_shapes_and_aux_nodes():
    """Push-T: S object slots + proprio + action nodes; predictions and node targets (B, T, S+2, D)."""
    cfg = load_config([str(REPO / "configs/pusht/predictor.yaml")], ["model.depth=1", "model.mlp_dim=32"])
    m = build_predictor(cfg.model)
    assert isinstance(m, PushTPredictor)
    B, T = 3, cfg.model.history_frames + cfg.model.pred_frames
    slots, prop, act = torch.randn(B, T, 4, 128), torch.randn(B, T, 4), torch.randn(B, T, 10)
    act[0, 1, 3] = float("nan")  # episode-boundary NaNs become zeros
    pred, nodes = m(slots, prop, act, torch.zeros(B, 4, dtype=torch.bool))
    assert pred.shape == nodes.shape == (B, T, 6, 128)
    assert torch.isfinite(pred).all()
    assert torch.equal(nodes[:, :, :4], slots)


def test_token_grid_follows_the_spec():
    """t=0 is always real; masked slots become queries for t>=1; all future tokens are queries."""
    m = tiny()
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[False, True, False, False], [False, False, False, False]])
    grid = m.build_tokens(x, masked, m.total_frames, m.time_pos_embed)
    pe = m.time_pos_embed[0, :, 0]
    query = lambda b, t, s: m.mask_token[0, 0] + pe[t] + m.id_projector(x[b, 0, s])  # noqa: E731
    for t in range(5):
        for s in range(4):
            real = t < 3 and (t == 0 or not masked[0, s])
            expect = x[0, t, s] + pe[t] if real else query(0, t, s)
            assert torch.allclose(grid[0, t, s], expect, atol=1e-6), (t, s)
    assert torch.allclose(grid[1, 1:3], x[1, 1:3] + pe[1:3, None], atol=1e-6)


def test_permutation_equivariance_over_slots():
    """No slot-index embedding: permuting input slots (and masks) permutes the predictions."""
    m = tiny().eval()
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[True, False, False, True], [False, True, False, False]])
    perm = torch.tensor([2, 0, 3, 1])
    out = m(x, masked)
    out_p = m(x[:, :, perm], masked[:, perm])
    assert_close_verbose(out_p, out[:, :, perm], 1e-5, 1e-5, "permuted predictions")


@pytest.mark.parametrize("variant", ["clevrer", "pusht"])
def test_reference_layout_matches_original_state_dict(variant):
    """With layout=reference our state_dict has exactly the original keys and shapes (fixture derived from the
    original MaskedSlotPredictor / MaskedSlot_AP_Predictor), so released checkpoints load with weights_only=True."""
    fix = json.loads((FIXTURES / "reference_predictor_keys.json").read_text())[variant]
    c = fix["config"]
    m = MaskedSlotPredictor(
        num_slots=c["num_slots"], slot_dim=c["slot_dim"], history_frames=c["history_frames"],
        pred_frames=c["pred_frames"],
        depth=c["depth"], heads=c["heads"], mlp_dim=c["mlp_dim"], layout="reference",
    )
    ours = {k: list(v.shape) for k, v in m.state_dict().items()}
    assert ours == {k: s for k, s in fix["keys"]}
    assert sum(p.numel() for p in m.parameters()) == fix["num_params"]


def test_cjepa_layout_adds_pre_attention_norm_only():
    """The cjepa layout differs from the reference only by the attention pre-LayerNorm parameters."""
    ref = set(tiny(layout="reference").state_dict())
    ours = set(tiny(layout="cjepa").state_dict())
    assert ours - ref == {f"transformer.layers.{i}.0.norm.{p}" for i in range(2) for p in ("weight", "bias")}
    assert ref <= ours


def test_reference_layout_reproduces_original_numbers(tmp_path):
    """Loading a state_dict saved by the original code (tiny model, eval mode) gives its outputs: the masked
    forward with its fixed mask {0}, inference, and inference from one history frame (right-aligned PE)."""
    ref = torch.load(FIXTURES / "reference_predictor_tiny.pt", weights_only=True)
    m = MaskedSlotPredictor(num_slots=3, slot_dim=8, history_frames=2, pred_frames=2, depth=2, heads=2, mlp_dim=16,
                            dropout=0.0, layout="reference")
    m.load_state_dict(ref["state_dict"])
    m.eval()
    x = ref["x"]
    masked = torch.zeros(2, 3, dtype=torch.bool)
    masked[:, ref["masked"]] = True
    with torch.no_grad():
        assert_close_verbose(m(x, masked), ref["forward"], 1e-5, 1e-5, "forward")
        assert_close_verbose(m.inference(x), ref["inference"], 1e-5, 1e-5, "inference")
        assert_close_verbose(m.inference(x[:, :1]), ref["inference_1"], 1e-5, 1e-5, "inference from 1 frame")


def test_residual_off_reproduces_the_predictor_before_the_option():
    """model.residual=false and model.query_last=false compute exactly what the cjepa layout computed before the
    options existed (outputs saved by tests/fixtures/make_cjepa_predictor_fixture.py with that code, state_dict
    loaded strictly: no new parameters): masked forward and inference."""
    ref = torch.load(FIXTURES / "cjepa_predictor_tiny.pt", weights_only=True)
    m = MaskedSlotPredictor(num_slots=3, slot_dim=8, history_frames=2, pred_frames=2, depth=2, heads=2, mlp_dim=16,
                            dropout=0.0)
    m.load_state_dict(ref["state_dict"])
    m.eval()
    x = ref["x"]
    with torch.no_grad():
        assert torch.equal(m(x, ref["masked"]), ref["forward"])
        assert torch.equal(m.inference(x), ref["inference"])
        assert torch.equal(m.inference(x[:, :1]), ref["inference_1"])


def test_width_projects_tokens_into_a_wider_transformer_and_back():
    """model.width: the token grid (slot_dim) goes through in_proj to the transformer's width and to_out back, so
    outputs keep the slot shape; without the option there is no projection (state_dict as before), and a width
    equal to slot_dim with identity in_proj computes exactly the unprojected model."""
    torch.manual_seed(0)
    wide = tiny(width=48, heads=4)
    assert wide.in_proj.weight.shape == (48, 16) and wide.to_out.weight.shape == (16, 48)
    assert wide.transformer.layers[0][0].head_dim == 12  # default head_dim = width // heads
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[True, False, False, False], [False, False, True, False]])
    assert wide(x, masked).shape == (2, 5, 4, 16) and wide.inference(x).shape == (2, 2, 4, 16)
    assert "in_proj.weight" not in tiny().state_dict()

    plain = tiny().eval()
    same = tiny(width=16).eval()
    state = dict(plain.state_dict(), **{"in_proj.weight": torch.eye(16), "in_proj.bias": torch.zeros(16)})
    same.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(same(x, masked), plain(x, masked), atol=1e-6)
        same.in_proj.weight.mul_(2.0)  # the projection is on the path: changing it changes the output
        assert not torch.allclose(same(x, masked), plain(x, masked), atol=1e-3)
    with pytest.raises(ValueError, match="width is an option of the cjepa layout"):
        tiny(layout="reference", width=32)


def test_residual_adds_each_slots_last_visible_frame():
    """residual=True is the same network plus each slot's last visible history frame: T_h - 1, or the t=0 anchor
    for a masked slot (its hidden frames must not leak into its prediction); inference has nothing masked."""
    torch.manual_seed(0)
    plain = tiny()
    res = tiny(residual=True)
    x = torch.randn(2, 3, 4, 16)
    with torch.no_grad():  # zero-initialised output layer: a fresh residual model is the copy-last baseline
        assert torch.equal(res.inference(x), x[:, -1:].expand(-1, 2, -1, -1))
    res.load_state_dict(plain.state_dict())  # no new parameters
    masked = torch.tensor([[True, False, False, False], [False, False, True, True]])
    base = torch.where(masked[..., None], x[:, 0], x[:, -1])[:, None]
    with torch.no_grad():
        assert torch.equal(res(x, masked), plain(x, masked) + base)
        assert torch.equal(res.inference(x), plain.inference(x) + x[:, -1:])
        assert torch.equal(res.inference(x[:, :1]), plain.inference(x[:, :1]) + x[:, :1])
        assert torch.equal(res.forward_with_attention(x, masked)[0], plain.forward_with_attention(x, masked)[0] + base)
    # a masked slot's output does not depend on its hidden last frame
    x2 = x.clone()
    x2[0, -1, 0] += 1.0
    with torch.no_grad():
        assert torch.equal(res(x2, masked)[0, :, 0], res(x, masked)[0, :, 0])
    with pytest.raises(ValueError, match="^residual is an option of the cjepa layout"):
        tiny(layout="reference", residual=True)


def test_query_last_adds_each_slots_last_visible_frame_to_its_queries():
    """query_last=True: every query token (future steps, masked history steps) is the plain query plus a projection
    of its slot's last visible frame (T_h - 1, or the t=0 anchor of a masked slot); real history tokens are
    unchanged, and a masked slot's hidden frames reach no output."""
    torch.manual_seed(0)
    plain, ql = tiny(), tiny(query_last=True)
    missing, unexpected = ql.load_state_dict(plain.state_dict(), strict=False)
    assert (missing, unexpected) == (["last_projector.weight", "last_projector.bias"], [])
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[True, False, False, False], [False, False, True, True]])
    pe = ql.time_pos_embed
    with torch.no_grad():
        last = torch.where(masked[..., None], x[:, 0], x[:, -1])  # (B, S, D)
        extra = ql.last_projector(last)[:, None]  # (B, 1, S, D)
        got, ref = ql.build_tokens(x, masked, 5, pe), plain.build_tokens(x, masked, 5, pe)
        query = torch.cat([torch.zeros(2, 1, 4, dtype=torch.bool),
                           masked[:, None].expand(-1, 2, -1), torch.ones(2, 2, 4, dtype=torch.bool)], dim=1)
        assert torch.allclose(got, ref + extra * query[..., None])
        x2 = x.clone()
        x2[0, 1:, 0] += 1.0  # slot 0 of sample 0 is masked: its frames 1.. are hidden
        assert torch.equal(ql(x2, masked), ql(x, masked))
        assert not torch.equal(ql(x2), ql(x))  # unmasked, the same change is seen
    with pytest.raises(ValueError, match="^query_last is an option of the cjepa layout"):
        tiny(layout="reference", query_last=True)


def test_attention_capture_and_probing():
    """Attention maps are (B, L, L) rows summing to 1; probing names masked slots and first-future tokens."""
    m = tiny().eval()
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[False, True, False, False]] * 2)
    out, maps = m.forward_with_attention(x, masked)
    assert len(maps) == 2 and maps[0].shape == (2, 20, 20)
    assert torch.allclose(maps[-1].sum(-1), torch.ones(2, 20), atol=1e-5)
    assert_close_verbose(out, m(x, masked), 1e-5, 1e-5, "forward_with_attention output")
    probe = m.attention_probing(x, masked)
    assert set(probe) == {"masked_slot_1_t1", "masked_slot_1_t2"} | {f"future_t3_slot_{s}" for s in range(4)}
    assert probe["masked_slot_1_t1"].shape == (2, 5, 4)


def test_input_shape_errors_are_clear():
    """Wrong shapes name what was expected."""
    m = tiny()
    with pytest.raises(ValueError, match="needs T_h=3"):
        m(torch.randn(1, 2, 4, 16))
    with pytest.raises(ValueError, match="D=16"):
        m.inference(torch.randn(1, 3, 4, 8))
    with pytest.raises(ValueError, match="1..3 history frames"):
        m.inference(torch.randn(1, 4, 4, 16))


def test_sdpa_backend_matches_reference_math():
    """The sdpa attention backend gives the same outputs as the explicit reference math."""
    torch.manual_seed(0)
    a = tiny().eval()
    b = tiny(attention_backend="sdpa").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[True, False, False, False]] * 2)
    assert_close_verbose(b(x, masked), a(x, masked), 1e-5, 1e-5, "sdpa vs torch")


def test_aux_embedders_load_the_original_conv1d_weights():
    """The original proprio / action embedders are ``nn.Conv1d(C, D, kernel_size=1)`` over time. A PushTPredictor
    takes the state_dict of two real Conv1d modules (3-d weights) under their original names and then embeds every
    step exactly as the Conv1d slides over the time axis."""
    torch.manual_seed(0)
    m = PushTPredictor(num_slots=2, slot_dim=8, proprio_dim=4, action_dim=2, action_chunk=5, history_frames=2,
                       pred_frames=1, depth=1, heads=2, mlp_dim=16, dropout=0.0, layout="reference")
    convs = {"proprio_encoder": torch.nn.Conv1d(4, 8, kernel_size=1),
             "action_encoder": torch.nn.Conv1d(10, 8, kernel_size=1)}
    sd = m.state_dict()
    for name, conv in convs.items():
        for k, v in conv.state_dict().items():  # patch_embed.weight is (D, C, 1)
            sd[f"{name}.patch_embed.{k}"] = v.clone()
    assert sd["action_encoder.patch_embed.weight"].shape == (8, 10, 1)
    m.load_state_dict(sd)  # strict
    B, T = 3, 6
    prop, act = torch.randn(B, T, 4), torch.randn(B, T, 10)
    with torch.no_grad():
        for name, x in (("proprio_encoder", prop), ("action_encoder", act)):
            expect = convs[name](x.transpose(1, 2)).transpose(1, 2)  # (B, C, T) -> (B, D, T) -> (B, T, D)
            assert_close_verbose(getattr(m, name)(x), expect, 1e-6, 1e-6, name)
        nodes = m.nodes(torch.randn(B, T, 2, 8), prop, act)
        assert_close_verbose(nodes[:, :, 3], convs["action_encoder"](act.transpose(1, 2)).transpose(1, 2), 1e-6, 1e-6,
                             "action node")


def test_released_checkpoint_loads_with_weights_only(tmp_path):
    """An original-format state_dict file loads through our checkpoint reader into the reference layout."""
    from cjepa.utils.checkpoint import load_model_state

    ref = torch.load(FIXTURES / "reference_predictor_tiny.pt", weights_only=True)
    path = tmp_path / "cjepa_clevrer_predictor.ckpt"
    torch.save({f"module.{k}": v for k, v in ref["state_dict"].items()}, path)  # as a DDP-trained file would be
    sd = load_model_state(path)
    m = MaskedSlotPredictor(num_slots=3, slot_dim=8, history_frames=2, pred_frames=2, depth=2, heads=2, mlp_dim=16,
                            layout="reference")
    m.load_state_dict(sd)  # strict


@pytest.mark.interp
@requires_triton_runtime
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_compile_fullgraph_through_the_attention_backend(backend):
    """torch.compile(fullgraph=True) traces the predictor in one graph through its attention backend (the Triton
    kernel as the registered op cjepa::predictor_attention_fwd, no graph break), and the compiled model's outputs
    and parameter gradients match the uncompiled torch-backend model's."""
    torch.manual_seed(0)
    eager = tiny()
    compiled_model = tiny(attention_backend=backend)
    compiled_model.load_state_dict(eager.state_dict())
    x = torch.randn(2, 3, 4, 16)
    masked = torch.tensor([[True, False, False, False], [False, False, True, True]])
    graphs: list = []
    compiled = torch.compile(compiled_model, fullgraph=True, backend=compile_recording(graphs))
    outs = {}
    for name, model, fn in (("eager", eager, eager), ("compiled", compiled_model, compiled)):
        out = fn(x, masked)
        out.square().sum().backward()
        outs[name] = (out, {n: p.grad for n, p in model.named_parameters()})
    assert_close_verbose(outs["compiled"][0], outs["eager"][0], 1e-5, 1e-5, "output")
    for n, g in outs["eager"][1].items():
        assert_close_verbose(outs["compiled"][1][n], g, 1e-5, 1e-5, f"grad {n}")
    assert len(graphs) == 1
    if backend == "triton":
        assert "cjepa.predictor_attention_fwd.default" in graph_targets(graphs)
