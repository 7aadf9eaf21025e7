"""Transformer pieces of the C-JEPA predictor.

Parameter names follow the modules the original predictor was built from (``nn.MultiheadAttention``'s
``in_proj_weight`` / ``in_proj_bias`` / ``out_proj`` and an ``nn.Sequential`` feed-forward), so that with the
reference layout our ``state_dict`` has exactly the original keys and shapes. The attention core goes through
:mod:`cjepa.backends.attention`, which picks the kernel backend.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from cjepa.backends.attention import attention
from cjepa.backends.dropout import Dropout
from cjepa.backends.references import attention_probabilities


class AttentionCapture:
    """Collects the head-averaged attention probabilities of chosen transformer layers during one forward.

    Passed explicitly (``Transformer.forward(x, capture=...)``, ``MaskedSlotPredictor.forward(..., capture=...)``):
    without one the forward does nothing extra. A captured layer computes softmax(q k^T / sqrt(E)) with the
    eager math from the q and k its backend also receives, so fused kernels (sdpa, triton, flash-attn), which
    never form the probabilities, keep producing the output bit for bit. ``maps[i]`` is layer i's (B, L, L)
    map averaged over heads (nn.MultiheadAttention's ``average_attn_weights``, what the original probes read);
    ``layers`` selects layers by index (negative counts from the last), None = all.
    """

    def __init__(self, layers: Optional[Sequence[int]] = None):
        self.layers = None if layers is None else tuple(layers)
        self.maps: dict[int, torch.Tensor] = {}

    def wants(self, index: int, depth: int) -> bool:
        return self.layers is None or any(index == (j % depth) for j in self.layers)

    def recorder(self, index: int, depth: int) -> Optional[Callable[[torch.Tensor], None]]:
        if not self.wants(index, depth):
            return None

        def record(probs: torch.Tensor) -> None:  # (B, H, L, L)
            self.maps[index] = probs.detach().mean(dim=1)

        return record


class SelfAttention(nn.Module):
    """Multi-head self-attention with an explicit head width and an optional pre-LayerNorm.

    With ``pre_norm=False`` and ``heads * head_dim == dim`` this computes what ``nn.MultiheadAttention``
    computes (packed q/k/v projection, dropout on the attention weights) with the same parameter layout.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float, pre_norm: bool, backend: str = "torch"):
        super().__init__()
        self.heads, self.head_dim, self.dropout, self.backend = heads, head_dim, dropout, backend
        inner = heads * head_dim
        self.norm = nn.LayerNorm(dim) if pre_norm else None
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner))
        self.out_proj = nn.Linear(inner, dim)
        # Same initialisation as nn.MultiheadAttention, so both layouts start from the same distribution.
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, _ = x.shape
        h = self.norm(x) if self.norm is not None else x
        qkv = nn.functional.linear(h, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3*H*E)
        qkv = qkv.view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, L, E)
        return qkv[0], qkv[1], qkv[2]

    def _merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        B, H, L, E = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, L, H * E))  # (B, L, D)

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None,
                record: Optional[Callable[[torch.Tensor], None]] = None) -> torch.Tensor:
        """``record``, when given, receives this layer's attention probabilities (B, H, L, L), computed with the
        eager math from the same q and k; the output still comes from the configured backend, unchanged."""
        q, k, v = self._qkv(x)
        if record is not None:
            record(attention_probabilities(q, k, key_mask))
        p = self.dropout if self.training else 0.0
        return self._merge_heads(attention(q, k, v, backend=self.backend, key_mask=key_mask, dropout_p=p))


def feed_forward(dim: int, mlp_dim: int, dropout: float) -> nn.Sequential:
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear -> Dropout (indices 0, 1, 4 hold weights)."""
    return nn.Sequential(
        nn.LayerNorm(dim), nn.Linear(dim, mlp_dim), nn.GELU(), Dropout(dropout), nn.Linear(mlp_dim, dim),
        Dropout(dropout)
    )


class Transformer(nn.Module):
    """Bidirectional encoder: `depth` x (x + attn(x); x + ffn(x)), then a final LayerNorm.

    ``layers[i]`` is ``ModuleList([attention, feed_forward])`` to keep the original key paths
    (``layers.{i}.0.in_proj_weight``, ``layers.{i}.1.1.weight``, ...).
    """

    def __init__(
        self, dim: int, depth: int, heads: int, head_dim: int, mlp_dim: int, dropout: float, pre_norm: bool,
        backend: str
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([SelfAttention(dim, heads, head_dim, dropout, pre_norm, backend),
                           feed_forward(dim, mlp_dim, dropout)])
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None,
                capture: Optional[AttentionCapture] = None) -> torch.Tensor:
        for i, (attn, ff) in enumerate(self.layers):
            x = x + attn(x, key_mask, None if capture is None else capture.recorder(i, len(self.layers)))
            x = x + ff(x)
        return self.norm(x)

    def forward_with_attention(self, x: torch.Tensor, key_mask: Optional[torch.Tensor] = None):
        """Same as forward, plus each layer's head-averaged attention map (list of (B, L, L))."""
        capture = AttentionCapture()
        out = self.forward(x, key_mask, capture)
        return out, [capture.maps[i] for i in range(len(self.layers))]
