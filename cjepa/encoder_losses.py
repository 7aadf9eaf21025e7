"""Training losses of the object-centric encoders (VideoSAUR section 4.6, StoSAVi section 5).

VideoSAUR: ``loss = featrec + sim_weight * timesim``

* ``featrec`` = MSE between the decoder's first F output dims and the DINOv2 patch features (mean over every
  batch, frame, patch and dim);
* ``timesim`` = cross-entropy with soft targets: for each patch of frame t (t < T-1) the decoder's last P output
  dims are logits over the P patches of frame t+1; the target is the softmax over those patches of the cosine
  similarity of the last-block keys, with similarities below ``threshold`` set to -inf and divided by the
  temperature (a row with every entry below the threshold becomes uniform). Mean over batch, frame pairs and
  patches.

StoSAVi: ``loss = MSE(reconstruction, image) + kld_weight * KL(N(mu, sigma^2) || N(sg(mu), prior_var))``, the KL
summed over the slot dim and averaged over batch, frames and slots (only sigma is penalised: the prior mean is
the detached mu).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def feature_time_similarity(keys: torch.Tensor, temperature: float, threshold: float = 0.0) -> torch.Tensor:
    """keys (B, T, P, E) -> soft targets (B, T-1, P, P): row p of frame t is a distribution over frame t+1's patches."""
    k = F.normalize(keys.float(), p=2.0, dim=-1)
    sim = torch.einsum("btpe,btqe->btpq", k[:, :-1], k[:, 1:])  # (B, T-1, P, P) cosine similarity
    below = sim < threshold
    logits = (sim / temperature).masked_fill(below, float("-inf"))
    # A row that is -inf everywhere would give NaN: the original zeroes such rows before the softmax -> uniform.
    logits = logits.masked_fill(below.all(dim=-1, keepdim=True), 0.0)
    return torch.softmax(logits, dim=-1)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_j target_j log softmax(logits)_j (class axis last); torch's CE with soft targets."""
    return -(target * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def videosaur_losses(
    reconstruction: torch.Tensor,
    features: torch.Tensor,
    keys: torch.Tensor | None,
    *,
    sim_weight: float,
    sim_temp: float,
    sim_threshold: float = 0.0,
) -> dict[str, torch.Tensor]:
    """reconstruction (B, T, P, F + P), features (B, T, P, F), keys (B, T, P, E) -> {loss, loss_featrec,
    loss_timesim}."""
    Fdim = features.shape[-1]
    P = features.shape[-2]
    need = Fdim + (P if sim_weight > 0 else 0)
    if reconstruction.shape[-1] < need:
        raise ValueError(f"reconstruction has {reconstruction.shape[-1]} dims; expected {Fdim} features + {P} "
                         "similarity logits")
    featrec = F.mse_loss(reconstruction[..., :Fdim].float(), features.detach().float())
    out = {"loss_featrec": featrec}
    loss = featrec
    if sim_weight > 0:
        if keys is None or reconstruction.shape[1] < 2:
            raise ValueError("the time-similarity loss needs the backbone keys and clips of >= 2 frames")
        with torch.no_grad():
            target = feature_time_similarity(keys.detach(), sim_temp, sim_threshold)
        timesim = soft_cross_entropy(reconstruction[:, :-1, :, Fdim : Fdim + P], target)
        out["loss_timesim"] = timesim
        loss = loss + sim_weight * timesim
    out["loss"] = loss
    return out


def savi_kl(kernel_dist: torch.Tensor, prior_var: float) -> torch.Tensor:
    """kernel_dist (..., 2D) = [mu, log sigma^2] -> KL(N(mu, sigma^2) || N(sg(mu), prior_var)), summed over D,
    averaged."""
    D = kernel_dist.shape[-1] // 2
    log_var = kernel_dist[..., D:].float()
    log_var2 = math.log(prior_var)
    # mu - sg(mu) is 0 in value; kept so the expression is the KL the original writes (gradient 0 w.r.t. mu).
    mu = kernel_dist[..., :D].float()
    dmu = mu - mu.detach()
    kl = 0.5 * (log_var2 - log_var) + (log_var.exp() + dmu**2) / (2.0 * prior_var) - 0.5
    return kl.sum(dim=-1).mean()


def savi_losses(
    reconstruction: torch.Tensor, image: torch.Tensor, kernel_dist: torch.Tensor, *, kld_weight: float, kld_var: float
) -> dict[str, torch.Tensor]:
    """reconstruction, image (B, T, 3, H, W) in [-1, 1]; kernel_dist (B, T, S, 2D) -> {loss, loss_recon, loss_kld}."""
    recon = F.mse_loss(reconstruction.float(), image.detach().float())
    kld = savi_kl(kernel_dist, kld_var) if kld_weight > 0 else recon.new_zeros(())
    return {"loss": recon + kld_weight * kld, "loss_recon": recon, "loss_kld": kld}
