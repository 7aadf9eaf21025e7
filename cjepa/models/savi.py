"""StoSAVi (SlotFormer's stochastic SAVi, Kipf et al. 2022) as configured for CLEVRER (section 5).

frames (B, T, 3, H, W) ImageNet-normalised -> [-1, 1] (the original's input range) at ``resolution`` px
-> CNN (4 x conv k5, ReLU except after the last; stride 2 in the first layer only at 128 px) -> soft position
embedding -> LN -> Linear -> ReLU -> Linear (encoder features, D channels)
-> per frame: latents = learned ``init_latents`` at t = 0 (conditional SAVi: cued slots start from their object,
   see :meth:`SAVi.first_latents`), else the transition MLP of the previous slots
   (LN, then Linear -> ReLU -> Linear added to the normed input; ``encoder.savi.transition=identity`` carries the
   slots as they are); ``kernel_dist`` = Linear(D, 2D) gives
   (mu, log sigma^2) and the slot-attention init is mu + sigma * eps (stochastic kernels);
   slot attention (2 iterations, ``encoder.savi.iters_after_first`` after the first frame; eps 1e-6, GRU on the
   raw slots, residual LN-MLP) -> slots
-> spatial-broadcast decoder per slot: D x 8 x 8 grid + soft position embedding -> 4 transposed convs (k5,
   stride 2 until the output size is reached, ReLU) -> 1x1 conv to RGB + alpha; softmax of alpha over slots gives
   the masks, alpha-composited RGB is the reconstruction.

Loss: MSE(reconstruction, frame in [-1, 1]) + 1e-4 KL (:func:`cjepa.encoder_losses.savi_losses`). The original's
``prior_slot_layer`` ("useless, just for compatibility") is not built; its keys are reported and skipped when a
released checkpoint is loaded.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from cjepa.encoder_losses import savi_losses
from cjepa.models.object_encoder import (
    ObjectCentricEncoder,
    SlotOutput,
    check_frames,
    sample_noise,
)
from cjepa.models.slot_attention import LearnedSlotInit, SlotAttention
from cjepa.utils.image import imagenet_to_unit, resize_frames


def coordinate_grid(size: int) -> torch.Tensor:
    """(1, size, size, 4): (y, x, 1 - y, 1 - x) on [0, 1] (SlotFormer's ``build_grid``)."""
    r = torch.linspace(0.0, 1.0, size)
    y, x = torch.meshgrid(r, r, indexing="ij")
    g = torch.stack([y, x], dim=-1)[None]
    return torch.cat([g, 1.0 - g], dim=-1)


class SoftPositionEmbed(nn.Module):
    """Adds Linear(4 -> C) of the coordinate grid to a (N, C, h, w) feature map."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.dense = nn.Linear(4, channels)
        self.register_buffer("grid", coordinate_grid(size), persistent=False)  # derived, not a weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dense(self.grid).permute(0, 3, 1, 2)


class TransitionMLP(nn.Module):
    """SAVi's ``ResidualMLPPredictor`` with norm_first: y = LN(x) + MLP(LN(x))."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln(x)
        return x + self.mlp(x)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters and keys) that runs its stride-1 case as the equivalent convolution.

    A stride-1 transposed convolution is a convolution with the kernel's in/out channels swapped and its taps
    flipped, padded by ``k - 1 - padding``. On a CPU oneDNN's direct convolution (forward and both backward passes)
    is about 1.5x faster than its transposed one at the decoder's sizes; the result is the same up to summation
    order. Strided layers stay transposed convolutions."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        plain = (self.stride == (1, 1) and self.dilation == (1, 1) and self.groups == 1
                 and self.output_padding == (0, 0) and output_size is None and self.padding_mode == "zeros")
        if not plain:
            return super().forward(x, output_size)
        k_h, k_w = self.kernel_size
        weight = self.weight.transpose(0, 1).flip(-1, -2)  # (out, in, kh, kw)
        if x.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, self.bias, padding=(k_h - 1 - self.padding[0], k_w - 1 - self.padding[1]))


class SAVi(ObjectCentricEncoder):
    def __init__(self, enc_cfg, *, slot_attention_backend: str = "torch"):
        super().__init__()
        s, S, D = enc_cfg.savi, enc_cfg.num_slots, enc_cfg.slot_dim
        self.num_slots, self.slot_dim, self.resolution = S, D, s.resolution
        self.loss_names = ("loss", "loss_recon", "loss_kld")
        self.kld_weight, self.kld_var, self.eval_kernel = s.kld_weight, s.kld_var, s.eval_kernel
        self.grad_frames = s.grad_frames
        self.mask_source = enc_cfg.mask_source
        C, k = s.enc_channels, s.enc_kernel
        first_stride = 2 if s.resolution == 128 else 1
        self.feat_size = s.resolution // first_stride
        convs: list[nn.Module] = []
        for i in range(4):
            convs.append(nn.Conv2d(3 if i == 0 else C, C, k, stride=first_stride if i == 0 else 1, padding=k // 2))
            if i < 3:
                convs.append(nn.ReLU())
        self.cnn = nn.Sequential(*convs)  # weights at 0, 2, 4, 6
        self.enc_pos = SoftPositionEmbed(C, self.feat_size)
        self.enc_mlp = nn.Sequential(nn.LayerNorm(C), nn.Linear(C, D), nn.ReLU(), nn.Linear(D, D))
        self.initializer = LearnedSlotInit(S, D, std=1.0)
        self.needs_cues = s.init == "cues"
        if self.needs_cues:  # conditional SAVi: a cued slot starts from its object (see first_latents)
            self.cue_mlp = nn.Sequential(nn.Linear(2, D), nn.ReLU(), nn.Linear(D, D))
            self.cue_proj = nn.Linear(D, D)
            # (N, 2) feature-cell centres as (y, x) in [-1, 1], the units of first_frame_cues
            self.register_buffer("cue_grid", coordinate_grid(self.feat_size)[0, ..., :2].reshape(-1, 2) * 2.0 - 1.0,
                                 persistent=False)
        self.kernel_dist = nn.Linear(D, 2 * D)  # kernel_mlp=False in the CLEVRER config
        self.grouper = SlotAttention(
            D, D, iters=s.iters, eps=s.eps, gru_hidden="raw", mlp_hidden=s.slot_mlp, backend=slot_attention_backend
        )
        self.predictor = TransitionMLP(D, 2 * D)
        self.transition = s.transition
        self.iters_after_first = s.iters_after_first or s.iters
        self.dec_resolution = s.dec_resolution
        self.dec_pos = SoftPositionEmbed(D, s.dec_resolution)
        layers: list[nn.Module] = []
        size, kd = s.dec_resolution, s.dec_kernel
        for i in range(4):
            stride = 2 if size < s.resolution else 1
            layers += [
                ConvTranspose2d(
                    D if i == 0 else s.dec_channels, s.dec_channels, kd, stride=stride, padding=kd // 2,
                    output_padding=stride - 1
                ),
                nn.ReLU(),
            ]
            size *= stride
        layers.append(nn.Conv2d(s.dec_channels, 4, 1))
        self.decoder = nn.Sequential(*layers)  # weights at 0, 2, 4, 6 and 8
        # Channels-last convolutions: oneDNN's (CPU) and cuDNN's fast kernels take NHWC; with the weights in that
        # layout every convolution's output follows, and the NCHW input is converted once by the first layer.
        self.cnn.to(memory_format=torch.channels_last)
        self.decoder.to(memory_format=torch.channels_last)

    def describe(self) -> dict:
        return {
            "encoder": "savi",
            "slots": f"{self.num_slots}x{self.slot_dim}",
            "resolution": self.resolution,
            "cnn_channels": self.cnn[0].out_channels,
        }

    # ------------------------------------------------------------------ pieces

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised frames -> [-1, 1] at the model resolution, (B, T, 3, R, R)."""
        check_frames(frames)
        return resize_frames(imagenet_to_unit(frames), self.resolution) * 2.0 - 1.0

    def frame_features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, T, 3, R, R) in [-1, 1] -> encoder features (B, T, N, D)."""
        B, T = images.shape[:2]
        x = self.enc_pos(self.cnn(images.flatten(0, 1)))  # (BT, C, h, w)
        x = x.flatten(2).transpose(1, 2)  # (BT, N, C)
        return self.enc_mlp(x).view(B, T, x.shape[1], -1)

    def _kernels(self, dist: torch.Tensor, generator) -> torch.Tensor:
        D = self.slot_dim
        mu = dist[..., :D]
        if not self.training and self.eval_kernel == "mean":
            return mu
        eps = sample_noise(tuple(mu.shape), device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + eps * torch.exp(0.5 * dist[..., D:])

    def first_latents(self, batch_size: int, cues: Optional[torch.Tensor], features: torch.Tensor) -> torch.Tensor:
        """First-frame latents (B, S, D): the learned vectors; a cued slot instead starts from its object.

        A cued slot's latent embeds its centre of mass (cue_mlp) plus the first frame's encoder features
        ``features`` (B, N, D) pooled in a Gaussian window (2 feature cells wide) around the centre (cue_proj). The
        pooled term makes the first query look like the object itself, so slot k attends to
        object k from the first training step instead of after the long search for objects that unconditional
        slot attention needs; the position term alone had to be learned first and did not bind in short runs.
        """
        latents = self.initializer(batch_size)
        if cues is None:
            return latents
        cues = cues.to(latents.dtype)
        present, centre = cues[..., :1], cues[..., 1:]  # (B, S, 1), (B, S, 2)
        sigma = 2.0 * 2.0 / max(self.feat_size - 1, 1)  # two grid cells, in [-1, 1] units
        d2 = ((centre[:, :, None, :] - self.cue_grid.to(cues.dtype)) ** 2).sum(-1)  # (B, S, N)
        window = torch.softmax(-d2 / (2.0 * sigma**2), dim=-1)
        cued = self.cue_mlp(centre) + self.cue_proj(window @ features)  # (B, S, D)
        return torch.where(present > 0, cued, latents)

    def next_latents(self, slots: torch.Tensor) -> torch.Tensor:
        """Latents (B, S, D) of frame t + 1 from the slots (B, S, D) of frame t (encoder.savi.transition)."""
        return self.predictor(slots) if self.transition == "mlp" else slots

    def track(self, features: torch.Tensor, generator, init_slots=None,
              cues=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """features (B, T, N, D) -> slots (B, T, S, D), kernel distributions (B, T, S, 2D), attention (B, T, S, N)."""
        B = features.shape[0]
        prev = init_slots
        slots, dists, attn = [], [], []
        for t in range(features.shape[1]):
            if prev is None:
                latents, iters = self.first_latents(B, cues, features[:, 0]), self.grouper.iters
            else:  # a later frame: its latents come from the previous frame's slots
                latents, iters = self.next_latents(prev), self.iters_after_first
            dist = self.kernel_dist(latents)
            prev, a = self.grouper(self._kernels(dist, generator), features[:, t], iters=iters)
            slots.append(prev)
            dists.append(dist)
            attn.append(a)
        return torch.stack(slots, 1), torch.stack(dists, 1), torch.stack(attn, 1)

    def decode(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """slots (N, S, D) -> reconstruction (N, 3, R, R) and masks (N, S, R, R)."""
        N, S, D = slots.shape
        x = slots.reshape(N * S, D, 1, 1).expand(-1, -1, self.dec_resolution, self.dec_resolution)
        out = self.decoder(self.dec_pos(x)).view(N, S, 4, self.resolution, self.resolution)
        masks = torch.softmax(out[:, :, 3], dim=1)  # over slots
        recon = (out[:, :, :3] * masks[:, :, None]).sum(dim=1)
        return recon, masks

    # ------------------------------------------------------------------ interface

    def encode(self, frames, *, generator=None, init_slots=None, masks: bool = True, cues=None) -> SlotOutput:
        images = self.prepare(frames)
        B, T = images.shape[:2]
        if init_slots is None:  # a continued video starts from its slots, not from cues
            self.check_cues(cues, B)
        slots, dists, attn = self.track(self.frame_features(images), generator, init_slots, cues)
        out_masks = None
        if masks:
            if self.mask_source == "decoder":
                out_masks = self.decode(slots.flatten(0,
                                                      1))[1].view(B, T, self.num_slots, self.resolution,
                                                                  self.resolution)
            else:
                out_masks = attn.unflatten(-1, (self.feat_size, self.feat_size))
        return SlotOutput(slots=slots, masks=out_masks, aux={"kernel_dist": dists})

    def trained_frames(self, T: int) -> list[int]:
        """Frames of a T-frame training clip that carry gradient and loss: all of them, or with truncated
        back-propagation (``encoder.savi.grad_frames`` = n, 0 < n < T - 1) the first frame, where the slots are
        seeded, and the last n; the frames between are tracked without gradient."""
        n = self.grad_frames
        return list(range(T)) if n == 0 or n >= T - 1 else [0, *range(T - n, T)]

    def _track_truncated(self, images: torch.Tensor, generator, cues, trained: list[int]):
        """track() over a training clip whose middle frames are tracked without gradient (see trained_frames).

        The first frame keeps the slot seeding (cues, learned latents) trained and in every step's graph; the
        slots it yields enter the untracked frames detached, and those of the last untracked frame seed the
        trained window. Only the trained frames are encoded with gradient and decoded, so a long clip costs a
        forward pass per untracked frame: the transition learns from slots as far into a video as the clip
        reaches, at about the cost of a short clip."""
        first, window = trained[0], trained[1:]
        s0, d0, a0 = self.track(self.frame_features(images[:, :1]), generator, cues=cues)
        with torch.no_grad():  # (B, T - 1 - n, ...) frames between: carried, not trained
            mid = self.track(self.frame_features(images[:, first + 1 : window[0]]), generator, s0[:, -1].detach())[0]
        s1, d1, a1 = self.track(self.frame_features(images[:, window[0] :]), generator, mid[:, -1])
        return torch.cat([s0, s1], 1), torch.cat([d0, d1], 1), torch.cat([a0, a1], 1)

    def training_losses(self, frames, *, generator=None, cues=None):
        images = self.prepare(frames)
        B = images.shape[0]
        self.check_cues(cues, B)
        trained = self.trained_frames(images.shape[1])
        if self.training and len(trained) < images.shape[1]:
            slots, dists, attn = self._track_truncated(images, generator, cues, trained)
            images = images[:, trained]  # (B, 1 + n, 3, R, R): the frames the loss sees
        else:  # evaluation scores every frame of its clip
            slots, dists, attn = self.track(self.frame_features(images), generator, cues=cues)
        T = images.shape[1]
        recon, dec_masks = self.decode(slots.flatten(0, 1))
        recon = recon.view(B, T, 3, self.resolution, self.resolution)
        losses = savi_losses(recon, images, dists, kld_weight=self.kld_weight, kld_var=self.kld_var)
        if self.mask_source == "decoder":
            masks = dec_masks.view(B, T, self.num_slots, self.resolution, self.resolution)
        else:
            masks = attn.unflatten(-1, (self.feat_size, self.feat_size))
        out = SlotOutput(slots=slots, masks=masks.detach(), aux={"reconstruction": recon.detach()})
        if self.training:  # which clip frames the slots and masks are of (all of them unless truncated)
            out.aux["frames"] = torch.tensor(trained)
        return losses, out
