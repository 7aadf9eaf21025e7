"""SAVi encoder (cjepa/models/savi.py)."""

import pytest
import torch
import torch.nn as nn

from cjepa.config import load_config
from cjepa.config.errors import ConfigError
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.savi import ConvTranspose2d, SAVi, coordinate_grid
from cjepa.utils.image import IMAGENET_MEAN, IMAGENET_STD
from tests.helpers import assert_close_verbose


def small(*extra):
    cfg = load_config(
        [],
        [
            "encoder.kind=savi",
            "encoder.savi.enc_channels=8",
            "encoder.savi.dec_channels=8",
            "encoder.slot_dim=16",
            "encoder.num_slots=3",
            "encoder.savi.slot_mlp=16",
            *extra,
        ],
    )
    torch.manual_seed(0)
    return build_object_encoder(cfg.encoder)


@pytest.mark.parametrize("res,feat", [(32, 32), (64, 64), (128, 64)])
def test_shapes_at_each_resolution(res, feat):
    """Decoder output = model resolution (stride-2 layers until reached); 128 px halves the feature map in conv 1."""
    m = small(f"encoder.savi.resolution={res}")
    losses, out = m(torch.randn(1, 2, 3, 40, 50))
    assert out.masks.shape == (1, 2, 3, res, res) and out.slots.shape == (1, 2, 3, 16)
    assert out.aux["reconstruction"].shape == (1, 2, 3, res, res)
    assert_close_verbose(out.masks.sum(dim=2), torch.ones(1, 2, res, res), 1e-5, 0, "alpha masks over slots")
    assert m.frame_features(m.prepare(torch.randn(1, 1, 3, 8, 8))).shape == (1, 1, feat * feat, 16)
    assert set(losses) == {"loss", "loss_recon", "loss_kld"}


def test_input_is_mapped_to_minus_one_one():
    """ImageNet-normalised black / white frames become -1 / +1, the original's input range."""
    m = small("encoder.savi.resolution=32")
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    black, white = (0 - mean) / std, (1 - mean) / std
    assert_close_verbose(m.prepare(black.expand(1, 1, 3, 32, 32)), -torch.ones(1, 1, 3, 32, 32), 1e-6, 0, "black")
    assert_close_verbose(m.prepare(white.expand(1, 1, 3, 32, 32)), torch.ones(1, 1, 3, 32, 32), 1e-6, 0, "white")


def test_coordinate_grid_and_transition():
    """Grid channels are (y, x, 1-y, 1-x) on [0, 1]; the transition is LN(x) + MLP(LN(x))."""
    g = coordinate_grid(3)
    assert g.shape == (1, 3, 3, 4)
    assert torch.equal(g[0, 2, 0], torch.tensor([1.0, 0.0, 0.0, 1.0]))
    m = small("encoder.savi.resolution=32")
    x = torch.randn(2, 3, 16)
    n = m.predictor.ln(x)
    assert_close_verbose(m.predictor(x), n + m.predictor.mlp(n), 1e-6, 1e-6, "transition")


def test_first_frame_uses_learned_latents_and_kernels_are_sampled():
    """t=0 starts from init_latents through the kernel distribution; eval_kernel=mean is deterministic, sample is
    seeded."""
    m = small("encoder.savi.resolution=32").eval()
    x = torch.randn(2, 3, 3, 32, 32)
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a, b = m.encode(x, generator=g(0), masks=False), m.encode(x, generator=g(0), masks=False)
    assert torch.equal(a.slots, b.slots)
    assert not torch.allclose(a.slots, m.encode(x, generator=g(1), masks=False).slots)
    dist = a.aux["kernel_dist"]
    assert torch.equal(dist[:, 0], m.kernel_dist(m.initializer(2)).detach())
    mean_model = small("encoder.savi.resolution=32", "encoder.savi.eval_kernel=mean").eval()
    mean_model.load_state_dict(m.state_dict())
    assert torch.equal(mean_model.encode(x, generator=g(0)).slots, mean_model.encode(x, generator=g(5)).slots)


def test_gradients_reach_every_parameter():
    """Reconstruction + KL reach every parameter (encoder, slot attention, transition, kernel head, decoder)."""
    m = small("encoder.savi.resolution=32")
    losses, _ = m(torch.randn(2, 2, 3, 32, 32))
    losses["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_first_frame_cues_are_centres_of_mass_in_id_order():
    """Slot 0 (background) has no cue; slot 1 + j gets the j-th object id's centre of mass on [-1, 1]; objects past
    S - 1 are dropped; ids need not be consecutive."""
    from cjepa.models.object_encoder import first_frame_cues

    m = torch.zeros(2, 5, 5, dtype=torch.long)
    m[0, 0, 0] = 7  # top-left corner -> (-1, -1)
    m[0, 4, 3:5] = 3  # bottom row, columns 3-4 -> (1, 0.75)
    m[1, 2, 2] = 1
    cues = first_frame_cues(m, 3)
    assert cues.shape == (2, 3, 3)
    assert torch.equal(cues[:, 0], torch.zeros(2, 3))
    assert_close_verbose(cues[0, 1], torch.tensor([1.0, 1.0, 0.75]), 1e-6, 0, "id 3 first")
    assert_close_verbose(cues[0, 2], torch.tensor([1.0, -1.0, -1.0]), 1e-6, 0, "then id 7")
    assert_close_verbose(cues[1, 1], torch.tensor([1.0, 0.0, 0.0]), 1e-6, 0, "centre pixel")
    assert torch.equal(cues[1, 2], torch.zeros(3))  # no second object: empty cue
    m[0, 1, 1], m[0, 1, 2] = 4, 5  # four objects, two cue slots: ids 3 and 4 kept
    assert_close_verbose(first_frame_cues(m, 3)[0, 2], torch.tensor([1.0, -0.5, -0.5]), 1e-6, 0, "id 4")
    with pytest.raises(ValueError, match="integer"):
        first_frame_cues(m.float(), 3)


def test_cued_slot_starts_from_features_pooled_around_its_cue():
    """A cued slot's first latent reads the first frame's features near its centre of mass (Gaussian window of
    two feature cells), not far from it; slots without a cue keep their learned vectors."""
    m = small("encoder.savi.resolution=32", "encoder.savi.init=cues").eval()
    N, D = 32 * 32, 16
    cues = torch.tensor([[[0.0, 0.0, 0.0], [1.0, -1.0, -1.0], [0.0, 0.0, 0.0]]])  # slot 1 at the top-left pixel
    feats = torch.randn(1, N, D)
    base = m.first_latents(1, cues, feats)
    near, far = feats.clone(), feats.clone()
    near[0, 0] += 10.0  # the cue's own cell
    far[0, N - 1] += 10.0  # the opposite corner
    assert not torch.allclose(m.first_latents(1, cues, near)[:, 1], base[:, 1])
    assert_close_verbose(m.first_latents(1, cues, far), base, 1e-6, 1e-6, "far features do not reach the cued slot")
    assert torch.equal(base[:, [0, 2]], m.initializer(1)[:, [0, 2]])


def test_conditional_savi_starts_from_cues_and_requires_them():
    """encoder.savi.init=cues: the first-frame latents move with the cue of a present object only, encode and
    training refuse to run without cues, and an unconditional model refuses cues instead of ignoring them."""
    m = small("encoder.savi.resolution=32", "encoder.savi.init=cues", "encoder.savi.eval_kernel=mean").eval()
    x = torch.randn(1, 2, 3, 32, 32)
    a = torch.tensor([[[0.0, 0.0, 0.0], [1.0, -0.5, 0.5], [0.0, 0.0, 0.0]]])
    b = a.clone()
    b[0, 1, 1:] = torch.tensor([0.5, -0.5])
    feats = torch.randn(1, 32 * 32, 16)
    la, lb = m.first_latents(1, a, feats), m.first_latents(1, b, feats)
    assert torch.equal(la[:, [0, 2]], m.initializer(1)[:, [0, 2]]) and not torch.allclose(la[:, 1], lb[:, 1])
    absent = a.clone()
    absent[0, 1, 0] = 0.0  # not present: the learned vector alone
    assert torch.equal(m.first_latents(1, absent, feats), m.initializer(1))
    assert not torch.allclose(m.encode(x, cues=a).slots, m.encode(x, cues=b).slots)
    with pytest.raises(ValueError, match="first-frame object cues"):
        m.encode(x)
    with pytest.raises(ValueError, match="first-frame object cues"):
        m(x)
    with pytest.raises(ValueError, match=r"\(B, S, 3\)"):
        m.encode(x, cues=a[:, :2])
    cont = m.encode(x, cues=a).slots[:, -1]
    assert m.encode(x, init_slots=cont).slots.shape == (1, 2, 3, 16)  # continuing a video needs no cues
    with pytest.raises(ValueError, match="not conditional"):
        small("encoder.savi.resolution=32").encode(x, cues=a)
    losses, _ = m.train()(x, cues=a)
    losses["loss"].backward()
    assert m.cue_mlp[0].weight.grad is not None and m.cue_mlp[0].weight.grad.abs().sum() > 0


def test_truncated_backprop_trains_first_and_last_frames_over_carried_slots():
    """encoder.savi.grad_frames=n: a training clip decodes and back-propagates through its first frame and its last
    n only; the slots of the last n frames are those of tracking the whole clip (carried through the untrained
    frames), the frames between give no gradient, every parameter still gets one, and evaluation scores every frame."""
    m = small("encoder.savi.resolution=32", "encoder.savi.grad_frames=2", "encoder.savi.eval_kernel=mean")
    assert m.trained_frames(6) == [0, 4, 5] and m.trained_frames(3) == [0, 1, 2] and m.trained_frames(2) == [0, 1]
    x = torch.randn(2, 6, 3, 32, 32, requires_grad=True)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    losses, out = m(x, generator=g())
    assert out.slots.shape == (2, 3, 3,
                               16) and out.masks.shape[1] == 3 and torch.equal(out.aux["frames"],
                                                                               torch.tensor([0, 4, 5]))
    full = m.encode(x, generator=g(), masks=False).slots  # the same tracking with every frame, no truncation
    assert_close_verbose(out.slots, full[:, [0, 4, 5]], 1e-5, 1e-5, "trained frames' slots track the whole clip")
    losses["loss"].backward()
    moved = x.grad.abs().sum(dim=(0, 2, 3, 4))  # (T,) input gradient per frame
    assert (moved[[0, 4, 5]] > 0).all() and (moved[1:4] == 0).all(), moved
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    m.eval()
    assert m(x, generator=g())[1].masks.shape[1] == 6  # validation clips are scored whole


def _count_steps(m):
    """Wraps the grouper's update so each call is counted: (list of per-frame counts, grouper forward hook)."""
    per_frame, step = [], m.grouper.step

    def counted(*args, **kwargs):
        per_frame[-1] += 1
        return step(*args, **kwargs)

    m.grouper.step = counted
    m.grouper.register_forward_pre_hook(lambda mod, args: per_frame.append(0))
    return per_frame


@pytest.mark.parametrize("extra,first,later", [((), 2, 2), (("encoder.savi.iters_after_first=1",), 2, 1),
                                               (("encoder.savi.iters=1", "encoder.savi.iters_after_first=3"), 1, 3)])
def test_slot_attention_iterations_on_the_first_and_later_frames(extra, first, later):
    """encoder.savi.iters runs on the first frame, iters_after_first (0 = iters) on every frame seeded by the
    transition: a 4-frame clip runs [first, later, later, later] grouper steps, in training and evaluation, and a
    continued video (init_slots) runs ``later`` on all its frames."""
    m = small("encoder.savi.resolution=32", *extra)
    per_frame = _count_steps(m)
    x = torch.randn(2, 4, 3, 32, 32)
    m.train()(x)[0]["loss"].backward()
    assert per_frame == [first, later, later, later]
    per_frame.clear()
    out = m.eval().encode(x, masks=False)
    assert per_frame == [first, later, later, later]
    per_frame.clear()
    m.encode(x[:, :2], init_slots=out.slots[:, -1], masks=False)
    assert per_frame == [later, later]


def test_identity_transition_seeds_the_next_frame_with_the_slots_themselves():
    """encoder.savi.transition=identity: frame t + 1's kernel is kernel_dist(slots of frame t), the transition MLP
    is never run (but still built, so a checkpoint trained with it loads); "mlp" runs it once per later frame."""
    seen = []
    for transition in ("mlp", "identity"):
        m = small("encoder.savi.resolution=32", "encoder.savi.eval_kernel=mean",
                  f"encoder.savi.transition={transition}").eval()
        calls, inits = [], []
        m.predictor.register_forward_hook(lambda mod, args, out: calls.append(1))
        m.grouper.register_forward_pre_hook(lambda mod, args, kwargs: inits.append(args[0]), with_kwargs=True)
        x = torch.randn(2, 3, 3, 32, 32)
        with torch.no_grad():
            slots = m.encode(x, masks=False).slots  # (B, T, S, D)
            assert len(calls) == (2 if transition == "mlp" else 0)  # frames 1 and 2
            latents = slots[:, 0] if transition == "identity" else m.predictor(slots[:, 0])
            want = m.kernel_dist(latents)[..., : m.slot_dim]
        assert_close_verbose(inits[1], want, 1e-6, 1e-6, f"{transition}: frame-1 kernel from frame-0 slots")
        seen.append(set(m.state_dict()))
    assert seen[0] == seen[1]


def test_iteration_and_transition_options_are_checked():
    with pytest.raises(ConfigError, match="iters_after_first"):
        small("encoder.savi.iters_after_first=-1")
    with pytest.raises(ConfigError, match="transition"):
        small("encoder.savi.transition=none")


@pytest.mark.parametrize("channels_last", [False, True])
def test_stride_one_transposed_conv_runs_as_the_equivalent_convolution(channels_last):
    """The decoder's ConvTranspose2d: stride-1 layers computed as a convolution give nn.ConvTranspose2d's output
    and gradients (same parameters); strided layers are nn.ConvTranspose2d's own forward."""
    for stride, out_pad in ((1, 0), (2, 1)):
        torch.manual_seed(0)
        ours = ConvTranspose2d(5, 4, 3, stride=stride, padding=1, output_padding=out_pad)
        ref = nn.ConvTranspose2d(5, 4, 3, stride=stride, padding=1, output_padding=out_pad)
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(2, 5, 6, 6)
        if channels_last:
            ours.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), ref(xb)
        torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(xa.grad, xb.grad, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=1e-4, rtol=1e-5)


def test_convolutions_are_channels_last():
    """SAVi's CNN and decoder weights are NHWC, so oneDNN / cuDNN take their fast NHWC kernels."""
    model = SAVi(load_config([], ["encoder.kind=savi"]).encoder)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 9
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
