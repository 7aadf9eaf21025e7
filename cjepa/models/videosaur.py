"""VideoSAUR (Zadaianchuk et al. 2023) as configured by C-JEPA (sections 4.2-4.6).

frames (B, T, 3, H, W) -> resize to 196 -> frozen DINOv2 ViT-S/14 -> patch features (B, T, 196, 384)
-> adapter MLP (LN, 384 -> 768 -> ReLU -> D) -> per frame t: slot attention (3 iterations at t = 0, 2 after)
starting from the previous frame's *predicted* slots -> slots (B, T, S, D); the predictor (one pre-norm transformer
block over the S slots of a frame) maps the corrected slots of t to the initial slots of t+1.
The SlotMixer decoder maps each frame's slots to 196 x (384 + 196) outputs: the DINOv2 features and, per patch,
logits over the next frame's patches (the time-similarity loss); its mixing weights are the slot masks.

Initial slots: :class:`~cjepa.models.slot_attention.RandomSlotInit` (learned mu, sigma), noise from the given
generator. Faithfulness switches (all default to the original's behaviour, which the released checkpoints
need): GRU hidden = LayerNorm-ed slots (Q14), DINOv2 features after the final LayerNorm (Q14), transformer
logits scaled by sqrt(head_dim) (see :class:`~cjepa.models.encoder_layers.PackedAttention`).
"""

from __future__ import annotations

from typing import Optional

import torch

from cjepa.encoder_losses import videosaur_losses
from cjepa.models.dinov2 import Dinov2Backbone
from cjepa.models.encoder_layers import MLP, SlotMixerDecoder, TransformerStack
from cjepa.models.object_encoder import ObjectCentricEncoder, SlotOutput, check_frames
from cjepa.models.slot_attention import RandomSlotInit, SlotAttention
from cjepa.utils.image import resize_frames


class VideoSAUR(ObjectCentricEncoder):
    def __init__(self, enc_cfg, *, attention_backend: str = "torch", slot_attention_backend: str = "torch"):
        super().__init__()
        v, S, D = enc_cfg.videosaur, enc_cfg.num_slots, enc_cfg.slot_dim
        self.num_slots, self.slot_dim = S, D
        self.iters_first, self.iters = v.iters_first, v.iters
        self.sim_weight, self.sim_temp, self.sim_threshold = v.sim_weight, v.sim_temp, v.sim_threshold
        self.loss_names = ("loss", "loss_featrec") + (("loss_timesim",) if v.sim_weight > 0 else ())
        self.mask_source = enc_cfg.mask_source
        self.backbone = Dinov2Backbone.from_config(enc_cfg.backbone)  # build_object_encoder warns if it stays random
        F, P = self.backbone.dim, self.backbone.num_patches
        self.feature_dim, self.num_patches, self.grid = F, P, self.backbone.grid
        self.adapter = MLP(F, [v.mlp_hidden], D, initial_norm=True)
        self.initializer = RandomSlotInit(S, D)
        self.grouper = SlotAttention(D, D, iters=v.iters, eps=v.eps, gru_hidden=v.gru_hidden,
                                     backend=slot_attention_backend)
        self.predictor = TransformerStack(
            D, v.predictor_blocks, v.predictor_heads, v.predictor_ffn, logit_scale=v.attn_logit_scale,
            backend=attention_backend
        )
        self.decoder = SlotMixerDecoder(
            D,
            F + P,
            P,
            blocks=v.decoder_blocks,
            heads=v.decoder_heads,
            ffn=v.decoder_ffn,
            renderer_dims=v.renderer_dims,
            logit_scale=v.attn_logit_scale,
            backend=attention_backend,
        )

    def describe(self) -> dict:
        return {
            "encoder": "videosaur",
            "slots": f"{self.num_slots}x{self.slot_dim}",
            "backbone": f"dinov2 {self.backbone.dim}d/{len(self.backbone.model.encoder.layer)} layers "
            f"@{self.backbone.image_size}px, {self.backbone.features_mode}, "
            + ("pretrained" if self.backbone.pretrained else "RANDOM INIT"),
        }

    # ------------------------------------------------------------------ pieces

    def frame_features(self, frames: torch.Tensor, need_keys: bool) -> dict[str, Optional[torch.Tensor]]:
        """frames (B, T, 3, H, W) -> backbone features / keys (B, T, P, F) and adapted features (B, T, P, D)."""
        check_frames(frames)
        B, T = frames.shape[:2]
        x = resize_frames(frames, self.backbone.image_size)
        bb = self.backbone(x.flatten(0, 1), need_keys=need_keys)
        feats = bb["features"].view(B, T, self.num_patches, -1)  # (B, T, P, F)
        keys = bb["keys"].view(B, T, self.num_patches, -1) if need_keys else None
        return {"backbone": feats, "keys": keys, "features": self.adapter(feats)}

    def track(self, features: torch.Tensor,
              init_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Slot attention over time. features (B, T, P, D), init (B, S, D) -> slots, next-frame predictions,
        attention."""
        state = init_slots
        slots, predicted, attn = [], [], []
        for t in range(features.shape[1]):
            s_t, a_t = self.grouper(state, features[:, t], iters=self.iters_first if t == 0 else self.iters)
            state = self.predictor(s_t)  # initial slots of frame t+1
            slots.append(s_t)
            predicted.append(state)
            attn.append(a_t)
        return torch.stack(slots, 1), torch.stack(predicted, 1), torch.stack(attn, 1)  # (B, T, S, D) x2, (B, T, S, P)

    def _to_maps(self, masks: torch.Tensor) -> torch.Tensor:
        return masks.unflatten(-1, (self.grid, self.grid))  # (..., P) -> (..., h, w)

    # ------------------------------------------------------------------ interface

    def encode(self, frames, *, generator=None, init_slots=None, masks: bool = True, cues=None) -> SlotOutput:
        self.check_cues(cues, frames.shape[0])
        B, T = frames.shape[:2]
        f = self.frame_features(frames, need_keys=False)
        init = init_slots if init_slots is not None else self.initializer(B, generator)
        slots, predicted, attn = self.track(f["features"], init)
        out_masks = None
        if masks:
            if self.mask_source == "decoder":
                m = self.decoder.masks(slots.flatten(0, 1)).view(B, T, self.num_slots, -1)
            else:
                m = attn
            out_masks = self._to_maps(m)
        return SlotOutput(slots=slots, masks=out_masks, aux={"predicted": predicted, "grouping_masks": attn})

    def training_losses(self, frames, *, generator=None, cues=None):
        self.check_cues(cues, frames.shape[0])
        B, T = frames.shape[:2]
        f = self.frame_features(frames, need_keys=self.sim_weight > 0)
        init = self.initializer(B, generator)
        slots, predicted, attn = self.track(f["features"], init)
        recon, dec_masks = self.decoder(slots.flatten(0, 1))
        recon = recon.view(B, T, self.num_patches, -1)  # (B, T, P, F + P)
        dec_masks = dec_masks.view(B, T, self.num_slots, -1)
        losses = videosaur_losses(
            recon, f["backbone"], f["keys"], sim_weight=self.sim_weight, sim_temp=self.sim_temp,
            sim_threshold=self.sim_threshold
        )
        masks = dec_masks if self.mask_source == "decoder" else attn
        return losses, SlotOutput(slots=slots, masks=self._to_maps(masks.detach()), aux={"grouping_masks": attn})
