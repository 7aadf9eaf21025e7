"""DINOv2 frame encoder: patch features and last-block keys of a frozen ViT (VideoSAUR section 4.2).

The ViT is transformers' maintained ``Dinov2Model`` built from a ``Dinov2Config`` (no download): ViT-S/14 with
a 37x37 learned position grid (the released weights are for 518 px), evaluated at 196 px, where transformers
resamples the grid to 14x14 with the same bicubic interpolation the original's HF model used. Weights come
from a local file (:mod:`cjepa.models.dinov2_weights`); without one the backbone stays randomly initialised
and says so loudly, because slots learned on random features are meaningless.

Outputs per image: ``features`` (P, D) patch tokens, after or before the final LayerNorm as configured (the
original silently took the post-LN ``last_hidden_state``; VideoSAUR's own code used the pre-LN block output,
Q14), and, on request, ``keys`` (P, D): the last block's key projection of its LayerNorm-ed input, all heads
concatenated, CLS removed, the target of VideoSAUR's time-similarity loss.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn as nn

from cjepa.models.dinov2_weights import load_into_hf_model


class RandomBackboneWarning(UserWarning):
    """The DINOv2 backbone has no pretrained weights."""


def build_hf_dinov2(dim: int, depth: int, heads: int, mlp_ratio: float, patch_size: int, pos_grid: int,
                    attn_implementation: str):
    """A randomly initialised transformers Dinov2Model of the given size (imports transformers lazily)."""
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(
        hidden_size=dim,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=int(dim * mlp_ratio),
        patch_size=patch_size,
        image_size=pos_grid * patch_size,
        layerscale_value=1.0,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        qkv_bias=True,
        use_swiglu_ffn=False,
        drop_path_rate=0.0,
    )
    # Set on the config before the model exists: transformers 4.x and 5.x both read it at construction.
    cfg._attn_implementation = attn_implementation
    model = Dinov2Model(cfg)
    if getattr(model.config, "_attn_implementation", attn_implementation) != attn_implementation:
        raise RuntimeError(f"transformers chose attention {model.config._attn_implementation!r}, not "
                           f"{attn_implementation!r}")
    return model


def _key_projection(layer: nn.Module) -> nn.Linear:
    """The key Linear of a Dinov2Layer, in either transformers naming."""
    attn = layer.attention
    if hasattr(attn, "k_proj"):
        return attn.k_proj
    return attn.attention.key


class Dinov2Backbone(nn.Module):
    """Images (N, 3, H, W), ImageNet-normalised -> patch features (N, P, D) [+ last-block keys (N, P, D)]."""

    def __init__(
        self,
        *,
        dim: int = 384,
        depth: int = 12,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        patch_size: int = 14,
        pos_grid: int = 37,
        image_size: int = 196,
        features: str = "post_ln",
        frozen: bool = True,
        attn_implementation: str = "sdpa",
        chunk_frames: int = 0,
    ):
        super().__init__()
        if features not in ("post_ln", "pre_ln"):
            raise ValueError(f"features={features!r}: choose 'post_ln' or 'pre_ln'")
        self.model = build_hf_dinov2(dim, depth, heads, mlp_ratio, patch_size, pos_grid, attn_implementation)
        self.dim, self.patch_size, self.image_size = dim, patch_size, image_size
        self.features_mode, self.frozen, self.chunk_frames = features, frozen, chunk_frames
        self.grid = image_size // patch_size
        self.pretrained = False
        self.load_report = None
        if frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    @classmethod
    def from_config(cls, cfg) -> "Dinov2Backbone":
        """Build from an ``encoder.backbone`` config section and load its weights (warn if there are none)."""
        m = cls(
            dim=cfg.dim,
            depth=cfg.depth,
            heads=cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            patch_size=cfg.patch_size,
            pos_grid=cfg.pos_grid,
            image_size=cfg.image_size,
            features=cfg.features,
            frozen=cfg.frozen,
            attn_implementation=cfg.attn_implementation,
            chunk_frames=cfg.chunk_frames,
        )
        if cfg.weights:
            m.load_weights(cfg.weights)
        return m

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def load_weights(self, path: str):
        self.load_report = load_into_hf_model(self.model, path)
        self.pretrained = True
        return self.load_report

    def warn_if_random(self) -> None:
        if not self.pretrained:
            warnings.warn(
                "DINOv2 backbone is RANDOMLY INITIALISED (no encoder.backbone.weights given): its features carry no "
                "pretrained semantics, so VideoSAUR slots will be poor. Point encoder.backbone.weights at a local "
                "dinov2-small model.safetensors, a timm vit_small_patch14_dinov2 state_dict or "
                "dinov2_vits14_pretrain.pth.",
                RandomBackboneWarning,
                stacklevel=2,
            )

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.model.eval()  # frozen backbone stays in eval mode (DINOv2 has no dropout/BN, but be explicit)
        return self

    def _forward_chunk(self, images: torch.Tensor, need_keys: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        out = self.model(pixel_values=images, output_hidden_states=True)
        # hidden_states[-1] is the last block's output before the final LayerNorm; last_hidden_state is after it.
        tokens = out.last_hidden_state if self.features_mode == "post_ln" else out.hidden_states[-1]
        feats = tokens[:, 1:]  # (N, P, D), CLS dropped
        keys = None
        if need_keys:
            last = self.model.encoder.layer[-1]
            keys = _key_projection(last)(last.norm1(out.hidden_states[-2]))[:, 1:]  # (N, P, D)
        return feats, keys

    def forward(self, images: torch.Tensor, need_keys: bool = False) -> dict[str, Optional[torch.Tensor]]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"Dinov2Backbone expects (N, 3, H, W) images, got {tuple(images.shape)}")
        if images.shape[-1] % self.patch_size or images.shape[-2] % self.patch_size:
            raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of the patch size "
                             f"{self.patch_size}")
        ctx = torch.no_grad() if self.frozen else torch.enable_grad()
        step = self.chunk_frames or images.shape[0]
        feats, keys = [], []
        with ctx:
            for s in range(0, images.shape[0], step):
                f, k = self._forward_chunk(images[s : s + step], need_keys)
                feats.append(f)
                keys.append(k)
        features = feats[0] if len(feats) == 1 else torch.cat(feats)
        key_out = None
        if need_keys:
            key_out = keys[0] if len(keys) == 1 else torch.cat(keys)
        return {"features": features, "keys": key_out}
