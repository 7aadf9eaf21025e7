"""Encoder losses against hand computations (cjepa/encoder_losses.py)."""

import math

import torch

from cjepa.encoder_losses import feature_time_similarity, savi_kl, savi_losses, soft_cross_entropy, videosaur_losses
from tests.helpers import assert_close_verbose


def _hand_time_similarity(keys, temp, thr):
    B, T, P, E = keys.shape
    out = torch.zeros(B, T - 1, P, P, dtype=torch.float64)
    for b in range(B):
        for t in range(T - 1):
            for p in range(P):
                kp = keys[b, t, p].double()
                sims = []
                for q in range(P):
                    kq = keys[b, t + 1, q].double()
                    c = float(kp @ kq / (kp.norm() * kq.norm()))
                    sims.append(c)
                if all(c < thr for c in sims):
                    out[b, t, p] = 1.0 / P  # a row with nothing above the threshold is uniform
                    continue
                ex = [math.exp(c / temp) if c >= thr else 0.0 for c in sims]
                z = sum(ex)
                out[b, t, p] = torch.tensor([e / z for e in ex])
    return out


def test_time_similarity_target_matches_hand_computation():
    """Target = softmax over next-frame patches of cosine/temperature, below-threshold entries excluded."""
    torch.manual_seed(3)
    keys = torch.randn(2, 3, 4, 5)
    got = feature_time_similarity(keys, temperature=0.15, threshold=0.0)
    assert_close_verbose(got, _hand_time_similarity(keys, 0.15, 0.0), 1e-5, 1e-5, "target")


def test_time_similarity_row_below_threshold_is_uniform():
    """A patch whose similarities to every next-frame patch are below the threshold gets a uniform target."""
    keys = torch.zeros(1, 2, 3, 2)
    keys[0, 0] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    keys[0, 1] = torch.tensor([[-1.0, 0.0], [-1.0, -0.1], [-0.5, -1.0]])
    got = feature_time_similarity(keys, temperature=0.25, threshold=0.0)
    assert_close_verbose(got[0, 0, 0], torch.full((3,), 1 / 3), 1e-6, 0, "uniform row")
    assert torch.isfinite(got).all()


def test_soft_cross_entropy_matches_torch_and_hand_value():
    """soft CE = torch's cross_entropy with probability targets (class axis moved), and -sum p log q by hand."""
    logits = torch.tensor([[[2.0, 0.0, -1.0]]])
    target = torch.tensor([[[0.5, 0.25, 0.25]]])
    z = math.log(math.exp(2) + 1 + math.exp(-1))
    hand = -(0.5 * (2 - z) + 0.25 * (0 - z) + 0.25 * (-1 - z))
    assert abs(float(soft_cross_entropy(logits, target)) - hand) < 1e-6
    x, t = torch.randn(2, 5, 7), torch.softmax(torch.randn(2, 5, 7), -1)
    ref = torch.nn.functional.cross_entropy(x.transpose(1, 2), t.transpose(1, 2))
    assert_close_verbose(soft_cross_entropy(x, t), ref, 1e-6, 1e-6, "vs torch")


def test_videosaur_total_is_featrec_plus_weighted_timesim():
    """loss = MSE(recon[..., :F], features) + w * CE(recon[:, :-1, :, F:F+P], time-similarity target)."""
    torch.manual_seed(0)
    B, T, P, F = 2, 3, 4, 6
    feats, keys = torch.randn(B, T, P, F), torch.randn(B, T, P, 5)
    recon = torch.randn(B, T, P, F + P, requires_grad=True)
    out = videosaur_losses(recon, feats, keys, sim_weight=0.3, sim_temp=0.15)
    featrec = ((recon[..., :F] - feats) ** 2).mean()
    target = _hand_time_similarity(keys, 0.15, 0.0).float()
    logq = torch.log_softmax(recon[:, :-1, :, F:], dim=-1)
    timesim = -(target * logq).sum(-1).mean()
    assert_close_verbose(out["loss_featrec"], featrec, 1e-6, 1e-6, "featrec")
    assert_close_verbose(out["loss_timesim"], timesim, 1e-5, 1e-5, "timesim")
    assert_close_verbose(out["loss"], featrec + 0.3 * timesim, 1e-5, 1e-5, "total")
    out["loss"].backward()
    assert recon.grad[:, -1, :, F:].abs().sum() == 0  # the last frame has no next frame to predict
    no_sim = videosaur_losses(recon.detach()[..., :F], feats, None, sim_weight=0.0, sim_temp=0.15)
    assert set(no_sim) == {"loss", "loss_featrec"}


def test_savi_kl_matches_the_gaussian_formula_and_ignores_mu():
    """KL(N(mu, s^2) || N(mu, v)) = log(sqrt(v)/s) + s^2/(2v) - 1/2 per dim, summed over D, averaged; no grad to mu."""
    mu = torch.tensor([[0.3, -1.0]], requires_grad=True)
    log_var = torch.tensor([[math.log(0.04), math.log(0.01)]], requires_grad=True)
    kl = savi_kl(torch.cat([mu, log_var], -1), prior_var=0.01)
    hand = (math.log(0.1 / 0.2) + 0.04 / 0.02 - 0.5) + (0.0 + 0.01 / 0.02 - 0.5)
    assert abs(float(kl.detach()) - hand) < 1e-6
    kl.backward()
    assert mu.grad.abs().sum() == 0 and log_var.grad.abs().sum() > 0


def test_savi_total_loss():
    """loss = MSE(reconstruction, image) + kld_weight * KL."""
    torch.manual_seed(1)
    rec, img = torch.randn(1, 2, 3, 4, 4), torch.randn(1, 2, 3, 4, 4)
    dist = torch.randn(1, 2, 3, 8)
    out = savi_losses(rec, img, dist, kld_weight=1e-4, kld_var=0.01)
    assert_close_verbose(out["loss_recon"], ((rec - img) ** 2).mean(), 1e-6, 1e-6, "recon")
    assert_close_verbose(out["loss"], out["loss_recon"] + 1e-4 * savi_kl(dist, 0.01), 1e-6, 1e-6, "total")
