"""Building blocks of the VideoSAUR encoder: MLPs, slot transformers and the SlotMixer decoder.

Attribute names follow the original modules (``layers.{i}`` of its MLP, ``self_attn.qkv`` / ``linear1`` / ``norm1``
of its ``nn.TransformerEncoderLayer`` subclass, ``to_q`` / ``norm_memory`` / ``pos_emb`` of ``SlotMixerDecoder``), so
mapping a released checkpoint onto these modules is a prefix rename (:mod:`cjepa.models.encoder_checkpoints`).
Attention cores go through :mod:`cjepa.backends.attention` (the configured kernel backend).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from cjepa.backends.attention import attention


class MLP(nn.Module):
    """[LayerNorm] -> (Linear -> ReLU) x len(hidden) -> Linear [-> ReLU]; weights in ``layers.{i}``, biases 0."""

    def __init__(self, inp: int, hidden: Sequence[int], out: int, *, initial_norm: bool = False,
                 final_relu: bool = False):
        super().__init__()
        mods: list[nn.Module] = [nn.LayerNorm(inp)] if initial_norm else []
        cur = inp
        for h in hidden:
            mods += [nn.Linear(cur, h), nn.ReLU()]
            cur = h
        mods.append(nn.Linear(cur, out))
        if final_relu:
            mods.append(nn.ReLU())
        self.layers = nn.Sequential(*mods)
        for m in self.layers:
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)  # the original's "default" init: torch weights, zero biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PackedAttention(nn.Module):
    """Multi-head attention with one packed q/k/v projection ``qkv`` (self- or cross-attention) and ``out_proj``.

    With ``memory`` the queries come from x and keys/values from memory through the same packed weight (rows
    [0, D) for q, [D, 3D) for k and v), as in the original. ``logit_scale="reference"`` reproduces its
    q.k * sqrt(head_dim) (it divides by head_dim**-0.5); "standard" is q.k / sqrt(head_dim).
    """

    def __init__(self, dim: int, heads: int, *, logit_scale: str = "reference", backend: str = "torch"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        if logit_scale not in ("reference", "standard"):
            raise ValueError(f"logit_scale={logit_scale!r}: choose 'reference' or 'standard'")
        self.heads, self.head_dim, self.logit_scale, self.backend = heads, dim // heads, logit_scale, backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.out_proj = nn.Linear(dim, dim)
        bound = math.sqrt(6.0 / (dim + dim))  # xavier-uniform of each of q, k, v separately
        nn.init.uniform_(self.qkv.weight, -bound, bound)
        nn.init.zeros_(self.qkv.bias)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.head_dim).transpose(1, 2)  # (B, H, L, E)

    def forward(self, x: torch.Tensor, memory: Optional[torch.Tensor] = None) -> torch.Tensor:
        D = x.shape[-1]
        if memory is None:
            q, k, v = self.qkv(x).split(D, dim=-1)
        else:
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x, w[:D], b[:D])
            k, v = F.linear(memory, w[D:], b[D:]).split(D, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if self.logit_scale == "reference":
            # attention() divides by sqrt(E); multiplying q by E first gives the original's q.k * sqrt(E).
            q = q * self.head_dim
        out = attention(q, k, v, backend=self.backend)  # (B, H, L, E)
        B, H, L, E = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, L, H * E))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm1(x), memory); x + linear2(relu(linear1(norm2(x)))). Dropout 0."""

    def __init__(self, dim: int, heads: int, ffn: int, *, logit_scale: str = "reference", backend: str = "torch"):
        super().__init__()
        self.self_attn = PackedAttention(dim, heads, logit_scale=logit_scale, backend=backend)
        self.linear1 = nn.Linear(dim, ffn)
        self.linear2 = nn.Linear(ffn, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, memory: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), memory)
        return x + self.linear2(F.relu(self.linear1(self.norm2(x))))


class TransformerStack(nn.Module):
    """``blocks`` of TransformerBlock; no final norm (as the original's TransformerEncoder)."""

    def __init__(self, dim: int, depth: int, heads: int, ffn: int, *, logit_scale: str = "reference",
                 backend: str = "torch"):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, ffn, logit_scale=logit_scale, backend=backend) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, memory: Optional[torch.Tensor] = None) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, memory)
        return x


class SlotMixerDecoder(nn.Module):
    """Slots (B, S, D) -> per-patch outputs (B, P, out_dim) and mixing masks (B, S, P) (section 4.5).

    Learned position queries cross-attend to the LayerNorm-ed slots through the ``allocator`` stack; a single
    attention (softmax over slots, scale att_dim^-1/2) then mixes the raw slots per position; the position
    embedding is added and an MLP renderer + linear head produce the features. The masks need no renderer, so
    :meth:`masks` skips it (used when only slot masks are wanted, e.g. at extraction).
    """

    def __init__(
        self,
        slot_dim: int,
        out_dim: int,
        num_patches: int,
        *,
        blocks: int = 3,
        heads: int = 4,
        ffn: int = 512,
        renderer_dims: Sequence[int] = (1024, 1024, 1024),
        logit_scale: str = "reference",
        backend: str = "torch",
    ):
        super().__init__()
        self.scale = slot_dim**-0.5  # att_dim = max(embed_dim, inp_dim) = slot_dim here
        self.pos_emb = nn.Parameter(torch.randn(1, num_patches, slot_dim) * slot_dim**-0.5)
        self.allocator = TransformerStack(slot_dim, blocks, heads, ffn, logit_scale=logit_scale, backend=backend)
        self.norm_memory = nn.LayerNorm(slot_dim)
        self.norm_q = nn.LayerNorm(slot_dim)
        self.norm_k = nn.LayerNorm(slot_dim)
        self.to_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.to_k = nn.Linear(slot_dim, slot_dim, bias=False)
        self.renderer = MLP(slot_dim, list(renderer_dims[:-1]), renderer_dims[-1], final_relu=True)
        self.output_transform = nn.Linear(renderer_dims[-1], out_dim)
        for lin in (self.to_q, self.to_k, self.output_transform):
            nn.init.xavier_uniform_(lin.weight)
        nn.init.zeros_(self.output_transform.bias)

    def _mix(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = self.pos_emb.expand(slots.shape[0], -1, -1)  # (B, P, D)
        queries = self.allocator(pos, memory=self.norm_memory(slots))
        q = self.to_q(self.norm_q(queries))  # (B, P, D)
        k = self.to_k(self.norm_k(slots))  # (B, S, D)
        weights = torch.softmax(torch.einsum("bpd,bsd->bps", q, k) * self.scale, dim=-1)  # over slots
        return weights, pos

    def masks(self, slots: torch.Tensor) -> torch.Tensor:
        return self._mix(slots)[0].transpose(1, 2)  # (B, S, P)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights, pos = self._mix(slots)
        mixed = torch.einsum("bps,bsd->bpd", weights, slots) + pos  # pos_embed_mode "add"
        return self.output_transform(self.renderer(mixed)), weights.transpose(1, 2)
