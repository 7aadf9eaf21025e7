"""The C-JEPA predictor: a bidirectional transformer over (time x slot) tokens with object-level masking.

Token grid for history slots x (B, T_h, S, D) and a per-sample masked set ``masked`` (B, S):

    t = 0 (identity anchor), any slot          -> x[:, 0, s] + PE[0]
    1 <= t < T_h, slot not masked              -> x[:, t, s] + PE[t]
    1 <= t < T_h, slot masked; or t >= T_h     -> mask_token + PE[t] + id_projector(x[:, 0, s])

With ``query_last`` (cjepa layout only) every query token (the third kind above) also gets ``last_projector`` of
its slot's last visible history frame (T_h - 1, or the t=0 anchor of a masked slot): the state the slot moves on
from, which the query would otherwise have to find by matching its t=0 anchor against the history tokens.

The grid is flattened time-major (token index = t * S + s), run through the transformer, and ``to_out``
maps every token back to slot space: predictions for all T_h + T_p steps. There is no slot-index embedding:
an object's identity is carried by its t=0 anchor alone, so the model is equivariant to slot permutations (Q4).

With ``residual`` (cjepa layout only) every output is added to its slot's last *visible* history frame: frame
T_h - 1, or the t=0 anchor for a slot masked in the history (adding its hidden last frame would leak what the
masking hides). The output layer starts at zero, so at initialisation a rollout is exactly the copy-last baseline
and training learns the motion.

Two layouts (``model.layout``): ``cjepa`` (pre-LayerNorm attention, free head width, small time-PE init) and
``reference`` (the original module exactly, same state_dict keys and shapes; Q3).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from cjepa.models.layers import AttentionCapture, Transformer


class MaskedSlotPredictor(nn.Module):
    def __init__(
        self,
        *,
        num_slots: int,
        slot_dim: int,
        history_frames: int,
        pred_frames: int,
        depth: int = 6,
        heads: int = 16,
        head_dim: Optional[int] = None,
        mlp_dim: int = 2048,
        dropout: float = 0.1,
        layout: str = "cjepa",
        time_pe_std: float = 0.02,
        residual: bool = False,
        query_last: bool = False,
        width: Optional[int] = None,
        attention_backend: str = "torch",
    ):
        super().__init__()
        if layout not in ("cjepa", "reference"):
            raise ValueError(f"unknown predictor layout {layout!r}")
        reference = layout == "reference"
        if reference:
            cjepa_only = {"width": width is not None, "residual": residual, "query_last": query_last}
            for option, requested in cjepa_only.items():
                if requested:
                    raise ValueError(f"{option} is an option of the cjepa layout; the reference layout is the original")
        # The transformer's residual width; the original runs at slot_dim, with no projection in or out.
        inner_width = width or slot_dim
        head_dim = head_dim or inner_width // heads
        self.residual = residual
        if reference and head_dim * heads != slot_dim:
            raise ValueError("the reference layout splits slot_dim across heads: head_dim * heads must equal slot_dim")
        self.num_slots, self.slot_dim = num_slots, slot_dim
        self.history_frames, self.pred_frames = history_frames, pred_frames
        self.total_frames = history_frames + pred_frames
        self.layout = layout

        self.mask_token = nn.Parameter(torch.zeros(1, 1, slot_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        # (1, T, 1, D): one vector per time index, shared by all slots.
        self.time_pos_embed = nn.Parameter(torch.randn(1, self.total_frames, 1,
                                                       slot_dim) * (1.0 if reference else time_pe_std))
        self.id_projector = nn.Linear(slot_dim, slot_dim)
        # Only built when on, so the state_dict of a model without the option is unchanged.
        self.last_projector = nn.Linear(slot_dim, slot_dim) if query_last else None
        # Only built with a width, so the state_dict of a model without the option is unchanged.
        self.in_proj = nn.Linear(slot_dim, inner_width) if width is not None else None
        self.transformer = Transformer(
            inner_width, depth, heads, head_dim, mlp_dim, dropout, pre_norm=not reference, backend=attention_backend
        )
        self.to_out = nn.Linear(inner_width, slot_dim)
        if residual:  # start exactly at copy-last: the first steps learn motion instead of undoing a random offset
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    # ------------------------------------------------------------------ token grid

    def build_tokens(self, history: torch.Tensor, masked: Optional[torch.Tensor], total_frames: int,
                     pe: torch.Tensor) -> torch.Tensor:
        """Token grid (B, total_frames, S, D) from history (B, T_h, S, D); ``pe`` is (1, total_frames, 1, D)."""
        B, T_h, S, D = history.shape
        queries = self.mask_token + pe + self.id_projector(history[:, 0]).unsqueeze(1)  # (B, T, S, D)
        if self.last_projector is not None:
            queries = queries + self.last_projector(self.last_visible(history, masked)).unsqueeze(1)
        real = history + pe[:, :T_h]  # (B, T_h, S, D)
        if masked is not None and T_h > 1:
            # visible[b, t, s]: t == 0, or the slot is not masked in this sample.
            t_idx = torch.arange(T_h, device=history.device)
            visible = (t_idx[None, :, None] == 0) | ~masked[:, None, :]  # (B, T_h, S)
            real = torch.where(visible[..., None], real, queries[:, :T_h])
        return torch.cat([real, queries[:, T_h:]], dim=1)

    def _tokens(self, grid: torch.Tensor) -> torch.Tensor:
        """(B, T, S, D) grid -> (B, T*S, W) time-major transformer input (W = width, or D without one)."""
        B, T, S, D = grid.shape
        tokens = grid.reshape(B, T * S, D)
        return tokens if self.in_proj is None else self.in_proj(tokens)

    def _run(self, grid: torch.Tensor, capture: Optional[AttentionCapture] = None) -> torch.Tensor:
        B, T, S, D = grid.shape
        out = self.transformer(self._tokens(grid), capture=capture)  # (B, T*S, W), time-major
        return self.to_out(out).view(B, T, S, D)

    @staticmethod
    def last_visible(history: torch.Tensor, masked: Optional[torch.Tensor]) -> torch.Tensor:
        """Each slot's last visible history frame (B, S, D): frame T_h - 1, or the t=0 anchor of a masked slot."""
        base = history[:, -1]
        if masked is not None:
            base = torch.where(masked[..., None], history[:, 0], base)
        return base

    def _add_base(self, out: torch.Tensor, history: torch.Tensor, masked: Optional[torch.Tensor]) -> torch.Tensor:
        """Residual prediction: add each slot's last visible history frame (B, S, D) to all its outputs."""
        if not self.residual:
            return out
        return out + self.last_visible(history, masked)[:, None]

    # ------------------------------------------------------------------ entry points

    def forward(self, history: torch.Tensor, masked: Optional[torch.Tensor] = None,
                capture: Optional[AttentionCapture] = None) -> torch.Tensor:
        """Training forward. history (B, T_h, S, D), masked (B, S) bool -> predictions (B, T_h + T_p, S, D).

        ``capture`` (probing) collects attention maps over the (T_h + T_p) * S time-major tokens; same output."""
        self._check(history, exact_history=True)
        grid = self.build_tokens(history, masked, self.total_frames, self.time_pos_embed)
        return self._add_base(self._run(grid, capture), history, masked)

    def inference(self, history: torch.Tensor) -> torch.Tensor:
        """Predict the T_p future steps from a fully visible history (B, T_h', S, D), T_h' <= T_h.

        The time embedding is right-aligned (the last future step always gets the last PE row), so a
        planner may start from fewer history frames than training used. Returns (B, T_p, S, D).
        No ``no_grad`` here (unlike the original): gradient-based planners differentiate through it.
        """
        self._check(history, exact_history=False)
        T_h = history.shape[1]
        total = T_h + self.pred_frames
        grid = self.build_tokens(history, None, total, self.time_pos_embed[:, -total:])
        return self._add_base(self._run(grid), history, None)[:, T_h:]

    def forward_with_attention(self, history: torch.Tensor, masked: Optional[torch.Tensor] = None,
                               pe_align: str = "left"):
        """Masked forward that also returns each layer's head-averaged attention (list of (B, L, L)), L = T*S.

        ``history`` may be shorter than T_h when probing; ``pe_align`` picks left- or right-aligned PE rows.
        """
        B, T_h, S, D = history.shape
        total = T_h + self.pred_frames
        pe = self.time_pos_embed[:, :total] if pe_align == "left" else self.time_pos_embed[:, -total:]
        grid = self.build_tokens(history, masked, total, pe)
        out, maps = self.transformer.forward_with_attention(self._tokens(grid))
        return self._add_base(self.to_out(out).view(B, total, S, D), history, masked), maps

    def attention_probing(self, history: torch.Tensor, masked: torch.Tensor,
                          layer_idx: int = -1) -> dict[str, torch.Tensor]:
        """What each query token attends to (section 1.7 of the spec), as (B, T, S) maps.

        Keys: ``masked_slot_{s}_t{t}`` for masked slots at history steps 1..T_h-1 (masked must be the same
        for all samples to name a slot), and ``future_t{T_h}_slot_{s}`` for every slot at the first future step.
        """
        _, maps = self.forward_with_attention(history, masked)
        B, T_h, S, _ = history.shape
        T = T_h + self.pred_frames
        attn = maps[layer_idx].view(B, T, S, T, S)
        out: dict[str, torch.Tensor] = {}
        shared = masked[0]
        if not bool((masked == shared).all()):
            raise ValueError("attention_probing names slots: pass the same masked set for every sample")
        for s in torch.nonzero(shared).flatten().tolist():
            for t in range(1, T_h):
                out[f"masked_slot_{s}_t{t}"] = attn[:, t, s]
        for s in range(S):
            out[f"future_t{T_h}_slot_{s}"] = attn[:, T_h, s]
        return out

    def _check(self, history: torch.Tensor, exact_history: bool) -> None:
        if history.dim() != 4:
            raise ValueError(f"predictor input must be (B, T_h, S, D); got shape {tuple(history.shape)}")
        _, T_h, S, D = history.shape
        # Without a slot-index embedding the model takes any number of slots; training uses exactly S, while
        # inference may drop slots (e.g. a counterfactual rollout with one object removed).
        if D != self.slot_dim or (exact_history and S != self.num_slots) or S < 1:
            raise ValueError(
                f"predictor built for S={self.num_slots} slots of D={self.slot_dim}; got S={S}, D={D} "
                f"(input shape {tuple(history.shape)})"
            )
        if exact_history and T_h != self.history_frames:
            raise ValueError(f"training forward needs T_h={self.history_frames} history frames, got {T_h}")
        if not exact_history and not 1 <= T_h <= self.history_frames:
            raise ValueError(f"inference takes 1..{self.history_frames} history frames, got {T_h}")


class AuxEmbedder(nn.Module):
    """Per-step linear embedding of proprio or action vectors: (B, T, C) -> (B, T, D).

    The original used a Conv1d with kernel 1 over time (``patch_embed``); we keep the key name and accept its
    3-d weight when loading, so original checkpoints load unchanged.
    """

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.patch_embed = nn.Linear(in_dim, dim)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "patch_embed.weight"
        w = state_dict.get(key)
        if w is not None and w.dim() == 3 and w.shape[-1] == 1:
            state_dict[key] = w[..., 0]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x.float())


class PushTPredictor(nn.Module):
    """Push-T world model: S object slots + a proprio node + an action node per time step (section 2).

    Node order per step is [slot_0 .. slot_{S-1}, proprio, action]. Masks never select the aux nodes.
    The action at step t is the chunk of raw actions executed between frames t and t+1.
    """

    def __init__(self, *, num_slots: int, slot_dim: int, proprio_dim: int, action_dim: int, action_chunk: int,
                 **predictor_kw):
        super().__init__()
        self.num_object_slots = num_slots
        self.predictor = MaskedSlotPredictor(num_slots=num_slots + 2, slot_dim=slot_dim, **predictor_kw)
        self.proprio_encoder = AuxEmbedder(proprio_dim, slot_dim)
        self.action_encoder = AuxEmbedder(action_dim * action_chunk, slot_dim)

    @property
    def history_frames(self) -> int:
        return self.predictor.history_frames

    @property
    def pred_frames(self) -> int:
        return self.predictor.pred_frames

    def nodes(self, slots: torch.Tensor, proprio: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(B, T, S, D), (B, T, P), (B, T, A*chunk) -> node tensor (B, T, S+2, D). NaNs in aux inputs -> 0."""
        p = self.proprio_encoder(torch.nan_to_num(proprio, 0.0)).unsqueeze(2)  # (B, T, 1, D)
        a = self.action_encoder(torch.nan_to_num(action, 0.0)).unsqueeze(2)
        return torch.cat([slots, p, a], dim=2)

    def forward(self, slots: torch.Tensor, proprio: torch.Tensor, action: torch.Tensor,
                masked_objects: Optional[torch.Tensor] = None):
        """Training forward over a whole clip, so DDP sees one forward through all trained parameters.

        slots (B, T, S, D), proprio (B, T, P), action (B, T, chunk*A), masked_objects (B, S) ->
        (predictions (B, T, S+2, D), node targets (B, T, S+2, D)). Only the first T_h steps are read as input.
        """
        nodes = self.nodes(slots, proprio, action)
        masked = None
        if masked_objects is not None:
            masked = torch.cat([masked_objects, masked_objects.new_zeros(masked_objects.shape[0], 2)], dim=1)
        return self.predictor(nodes[:, : self.history_frames], masked), nodes

    def inference(self, nodes_history: torch.Tensor) -> torch.Tensor:
        return self.predictor.inference(nodes_history)


def build_predictor(model_cfg, attention_backend: str = "torch") -> nn.Module:
    """MaskedSlotPredictor or PushTPredictor from a ``cjepa.config.ModelConfig``."""
    kw = dict(
        slot_dim=model_cfg.slot_dim,
        history_frames=model_cfg.history_frames,
        pred_frames=model_cfg.pred_frames,
        depth=model_cfg.depth,
        heads=model_cfg.heads,
        head_dim=model_cfg.head_dim,
        mlp_dim=model_cfg.mlp_dim,
        dropout=model_cfg.dropout,
        layout=model_cfg.layout,
        time_pe_std=model_cfg.time_pe_std,
        residual=model_cfg.residual,
        query_last=model_cfg.query_last,
        width=model_cfg.width,
        attention_backend=attention_backend,
    )
    if model_cfg.kind == "pusht":
        return PushTPredictor(
            num_slots=model_cfg.num_slots,
            proprio_dim=model_cfg.proprio_dim,
            action_dim=model_cfg.action_dim,
            action_chunk=model_cfg.action_chunk,
            **kw,
        )
    return MaskedSlotPredictor(num_slots=model_cfg.num_slots, **kw)
