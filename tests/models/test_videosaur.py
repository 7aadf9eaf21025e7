"""VideoSAUR encoder (cjepa/models/videosaur.py, cjepa/models/encoder_layers.py)."""

import warnings

import pytest
import torch

import cjepa.models.slot_attention as sa_mod
from cjepa.config import load_config
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.encoder_layers import PackedAttention
from tests.helpers import assert_close_verbose
from tests.kernels.common import requires_triton_runtime

pytestmark = pytest.mark.filterwarnings("ignore::cjepa.models.dinov2.RandomBackboneWarning")

TINY = [
    "encoder.backbone.dim=32",
    "encoder.backbone.depth=2",
    "encoder.backbone.heads=2",
    "encoder.backbone.pos_grid=4",
    "encoder.backbone.image_size=56",
    "encoder.slot_dim=16",
    "encoder.num_slots=3",
    "encoder.videosaur.mlp_hidden=32",
    "encoder.videosaur.predictor_ffn=32",
    "encoder.videosaur.decoder_ffn=32",
    "encoder.videosaur.renderer_dims=[32,32]",
]


def tiny(*extra):
    cfg = load_config([], TINY + list(extra))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_object_encoder(cfg.encoder), cfg


def test_encode_shapes_and_masks_are_distributions():
    """encode: frames of any size -> slots (B, T, S, D) and 14x14-patch-grid masks summing to 1 over slots."""
    m, _ = tiny()
    out = m.encode(torch.randn(2, 3, 3, 40, 64))
    assert out.slots.shape == (2, 3, 3, 16)
    assert out.masks.shape == (2, 3, 3, 4, 4)
    assert_close_verbose(out.masks.sum(dim=2), torch.ones(2, 3, 4, 4), 1e-5, 0, "mask sums")
    grouping, _ = tiny("encoder.mask_source=grouping")
    grouping.load_state_dict(m.state_dict())
    g = grouping.encode(torch.randn(1, 2, 3, 56, 56))
    assert g.masks.shape == (1, 2, 3, 4, 4)
    assert_close_verbose(g.masks.sum(dim=2), torch.ones(1, 2, 4, 4), 1e-5, 0, "grouping mask sums")


def test_three_iterations_on_the_first_frame_two_after(monkeypatch):
    """Slot attention runs iters_first=3 times on frame 0 and iters=2 on each later frame."""
    m, _ = tiny()
    calls = []
    real = sa_mod.slot_attention
    monkeypatch.setattr(sa_mod, "slot_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    m.encode(torch.randn(1, 4, 3, 56, 56), masks=False)
    assert len(calls) == 3 + 2 + 2 + 2


def test_generator_makes_encoding_deterministic_and_batch_independent():
    """Same generator seed -> same slots; per-video generators give a video the same slots alone or in a batch."""
    m, _ = tiny()
    m.eval()
    x = torch.randn(2, 3, 3, 56, 56)

    def gens(*seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    a = m.encode(x, generator=gens(1, 2)).slots
    b = m.encode(x, generator=gens(1, 2)).slots
    alone = m.encode(x[1:], generator=gens(2)).slots
    assert torch.equal(a, b)
    assert_close_verbose(a[1], alone[0], 1e-5, 1e-5, "batch independence")
    c = m.encode(x, generator=gens(3, 4)).slots
    assert not torch.allclose(a, c)


def test_training_losses_backprop_to_every_trainable_parameter_but_not_the_backbone():
    """The loss reaches every trainable parameter (adapter, slot attention, predictor, decoder, init); DINOv2 stays
    frozen."""
    m, _ = tiny()
    losses, out = m(torch.randn(2, 3, 3, 56, 56))
    assert set(losses) == {"loss", "loss_featrec", "loss_timesim"}
    losses["loss"].backward()
    for name, p in m.named_parameters():
        if name.startswith("backbone."):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert out.masks.shape == (2, 3, 3, 4, 4)


def test_reference_attention_scale_multiplies_by_sqrt_head_dim():
    """logit_scale='reference' reproduces the original's q.k * sqrt(E) (its q / head_dim**-0.5); 'standard' is q.k /
    sqrt(E)."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    for mode, factor in (("reference", 4**0.5), ("standard", 4**-0.5)):
        att = PackedAttention(8, 2, logit_scale=mode)
        q, k, v = att.qkv(x).split(8, dim=-1)
        q, k, v = (t.view(2, 5, 2, 4).transpose(1, 2) for t in (q, k, v))
        w = torch.softmax(q @ k.transpose(-1, -2) * factor, dim=-1)
        expected = att.out_proj((w @ v).transpose(1, 2).reshape(2, 5, 8))
        assert_close_verbose(att(x), expected, 1e-5, 1e-5, mode)


def test_cross_attention_splits_the_packed_projection():
    """With memory, q uses rows [0, D) of qkv on x and k, v use rows [D, 3D) on the memory."""
    torch.manual_seed(0)
    att = PackedAttention(8, 2, logit_scale="standard")
    x, mem = torch.randn(1, 4, 8), torch.randn(1, 3, 8)
    W, b = att.qkv.weight, att.qkv.bias
    q = (x @ W[:8].T + b[:8]).view(1, 4, 2, 4).transpose(1, 2)
    k = (mem @ W[8:16].T + b[8:16]).view(1, 3, 2, 4).transpose(1, 2)
    v = (mem @ W[16:].T + b[16:]).view(1, 3, 2, 4).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
    expected = att.out_proj((w @ v).transpose(1, 2).reshape(1, 4, 8))
    assert_close_verbose(att(x, mem), expected, 1e-5, 1e-5, "cross attention")


@pytest.mark.parametrize("backend", ["torch", "sdpa"])
def test_attention_backends_agree(backend):
    """The small transformers give the same slots with the torch reference and SDPA attention."""
    ref, cfg = tiny()
    other = build_object_encoder(cfg.encoder, attention_backend=backend)
    other.load_state_dict(ref.state_dict())
    x = torch.randn(1, 2, 3, 56, 56)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert_close_verbose(other.encode(x, generator=g()).slots, ref.encode(x, generator=g()).slots, 1e-4, 1e-4, backend)


@pytest.mark.interp
@requires_triton_runtime
def test_triton_attention_backend_matches_torch_forward_and_backward():
    """kernels.attention=triton runs a whole VideoSAUR training step, whose SlotMixer decoder cross-attends the
    patch queries to the slots (Lq != Lk), and gives the torch backend's losses and parameter gradients."""
    from tests.video_helpers import TINY_VIDEOSAUR

    cfg = load_config([], TINY_VIDEOSAUR)
    grads, losses = {}, {}
    for backend in ("torch", "triton"):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_object_encoder(cfg.encoder, attention_backend=backend)
        frames = torch.randn(2, 2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
        out, _ = model.training_losses(frames, generator=torch.Generator().manual_seed(2))
        out["loss"].backward()
        losses[backend] = out["loss"].detach()
        grads[backend] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert_close_verbose(losses["triton"], losses["torch"], 1e-5, 1e-5, "loss")
    assert grads["triton"].keys() == grads["torch"].keys() and any("decoder" in n for n in grads["torch"])
    for name, g in grads["torch"].items():
        assert_close_verbose(grads["triton"][name], g, 1e-5, 1e-4, f"grad {name}")
