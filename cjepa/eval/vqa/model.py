"""The ALOE reasoner over slot videos (section 6.2 of the spec): one transformer reads slots and words together.

Sequence per text row (a descriptive question, or one question + choice pair):

    [CLS] + num_frames * num_slots slot tokens (time-major) + question_len + choice_len word tokens
    = 1 + 25 * 7 + 32 = 208 positions for CLEVRER.

* Slot token: slot (D) ++ modality tag [0, 1] -> Linear(D + 2, d_model).
* Word token: embedding (word_dim = 14) ++ part tag (descriptive [0, 1]; multiple-choice question part
  [1, 0], choice part [0, 1]) ++ modality tag [1, 0] -> Linear(word_dim + 4, d_model).
* d_model = (word_dim + 4) * heads = 18 * 8 = 144; a zero-initialised learned CLS token and a zero-initialised
  learned positional embedding added to every position; ``depth`` pre-LN ``nn.TransformerEncoderLayer``
  blocks (ReLU FFN, dropout), no final LayerNorm; key padding on the word PADs and on removed slots.
* Heads on the CLS output: descriptive MLP d_model -> 128 -> ReLU -> answers, multiple-choice MLP
  d_model -> 128 -> ReLU -> 1 logit per choice.

Optional token layout ``token_layout="objects"`` (ours; the original has only ``frames``): one vision token per
slot instead of one per (frame, slot), made of that slot's ``num_frames`` vectors in time order -- [CLS] + S slot
tokens + words. An object's trajectory is then one token, so "did these two objects collide" is one comparison
between two tokens instead of a search over frame pairs, and the sequence is shorter. A slot padded in every
frame (a removed object) is key-padded; ``slot_pad`` must then be constant over time per slot.

Optional masked-slot prediction (``slot_prediction=True``; off in the original): ALOE's self-supervised objective
(Ding et al., 2021, "Attention over learned object embeddings enables complex visual reasoning") in our form.
Some slot tokens of a training batch enter as a learned mask vector instead of their slot, and a linear head
reads the transformer's output at those positions back to slot space; the caller regresses it onto the hidden
slots. To fill a hidden slot the encoder has to relate a slot to itself in other frames and to the objects it
meets, which the question heads alone reward only once they already read collisions.

Parameter and buffer names are the original ``CLEVRERTransformerModel``'s, so its checkpoints load after
stripping the ``transformer_model.`` prefix (:func:`load_reasoner_state`). One difference in execution, not in
maths: descriptive and multiple-choice rows run through the transformer in one batch (the original made two
passes); every row is independent, so the outputs are the same.

Pure single-device torch: no data, training or distributed imports.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from cjepa.utils.state_dict import load_checked


class _EncoderWithPositions(nn.Module):
    """Learned positional embedding (zero init) added once, then pre-LN encoder layers; no final LN."""

    def __init__(self, seq_len: int, d_model: int, heads: int, ffn_dim: int, depth: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, heads, dim_feedforward=ffn_dim, dropout=dropout, activation="relu", batch_first=True,
                norm_first=True
            )
            for _ in range(depth)
        )
        self.pos_embedding = nn.Parameter(torch.zeros(1, seq_len, d_model))

    def forward(self, x: torch.Tensor, key_padding: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embedding
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=key_padding)
        return x


TOKEN_LAYOUTS = ("frames", "objects")


class ALOEReasoner(nn.Module):
    def __init__(
        self,
        *,
        num_words: int,
        num_answers: int,
        slot_dim: int = 128,
        num_slots: int = 7,
        num_frames: int = 25,
        question_len: int = 20,
        choice_len: int = 12,
        word_dim: int = 14,
        heads: int = 8,
        depth: int = 12,
        ffn_dim: int = 512,
        dropout: float = 0.1,
        head_hidden: int = 128,
        slot_prediction: bool = False,
        token_layout: str = "frames",
    ):
        super().__init__()
        if token_layout not in TOKEN_LAYOUTS:
            raise ValueError(f"token_layout {token_layout!r} is not one of {TOKEN_LAYOUTS}")
        if slot_prediction and token_layout != "frames":
            raise ValueError("masked-slot prediction hides (frame, slot) tokens: it needs token_layout='frames'")
        self.num_slots, self.num_frames, self.slot_dim = num_slots, num_frames, slot_dim
        self.token_layout = token_layout
        self.question_len, self.text_len = question_len, question_len + choice_len
        token_dim = word_dim + 4  # word ++ part tag ++ modality tag
        self.d_model = token_dim * heads
        self.vision_tokens = num_frames * num_slots if token_layout == "frames" else num_slots
        self.seq_len = 1 + self.vision_tokens + self.text_len
        # Fixed tags (the original stores them as frozen parameters; buffers keep the same state_dict keys).
        self.register_buffer("text_token", torch.tensor([1.0, 0.0]))
        self.register_buffer("vision_token", torch.tensor([0.0, 1.0]))
        self.register_buffer("cls_token", torch.tensor([0.0, 1.0]))  # part tag of descriptive questions
        self.register_buffer("mc_question_token", torch.tensor([1.0, 0.0]))
        self.register_buffer("mc_choice_token", torch.tensor([0.0, 1.0]))
        self.q_embedding = nn.Embedding(num_words, word_dim)
        self.q_in_proj = nn.Linear(token_dim, self.d_model)
        vision_in = slot_dim if token_layout == "frames" else num_frames * slot_dim
        self.vision_in_proj = nn.Linear(vision_in + 2, self.d_model)
        self.CLS = nn.Parameter(torch.zeros(1, 1, self.d_model))
        self.transformer_encoder = _EncoderWithPositions(self.seq_len, self.d_model, heads, ffn_dim, depth, dropout)
        self.cls_answer_mlp = nn.Sequential(nn.Linear(self.d_model, head_hidden), nn.ReLU(),
                                            nn.Linear(head_hidden, num_answers))
        self.mc_answer_mlp = nn.Sequential(nn.Linear(self.d_model, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1))
        self.slot_prediction = slot_prediction
        if slot_prediction:  # only then: checkpoints without the objective keep the original's keys
            self.slot_mask_token = nn.Parameter(torch.zeros(1, 1, self.d_model))
            self.slot_prediction_head = nn.Linear(self.d_model, slot_dim)

    # ------------------------------------------------------------------ inputs

    def _check(self, video: torch.Tensor, row_video: torch.Tensor, tokens: torch.Tensor) -> None:
        if video.dim() != 4 or video.shape[1:] != (self.num_frames, self.num_slots, self.slot_dim):
            raise ValueError(
                f"reasoner expects videos (V, {self.num_frames}, {self.num_slots}, {self.slot_dim}) "
                f"(frames, slots, slot dim); got {tuple(video.shape)}"
            )
        if tokens.dim() != 2 or tokens.shape[1] != self.text_len:
            raise ValueError(f"reasoner expects tokens (N, {self.text_len}); got {tuple(tokens.shape)}")
        if row_video.shape != tokens.shape[:1]:
            raise ValueError(f"row_video {tuple(row_video.shape)} must have one entry per token row {tokens.shape[0]}")

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """(V, T, S, D) slots -> (V, T*S, d_model) vision tokens (time-major), or (V, S, d_model) with the
        objects layout (token s = slot s's T vectors, in time order)."""
        V, T, S, D = video.shape
        if self.token_layout == "frames":
            flat = video.reshape(V, T * S, D)
        else:
            flat = video.permute(0, 2, 1, 3).reshape(V, S, T * D)
        tag = self.vision_token.to(flat.dtype).expand(V, flat.shape[1], 2)
        return self.vision_in_proj(torch.cat([flat, tag], dim=-1))

    def vision_padding(self, slot_pad: torch.Tensor) -> torch.Tensor:
        """(V, T, S) bool -> (V, vision tokens) bool key padding of the vision tokens."""
        V = slot_pad.shape[0]
        if self.token_layout == "frames":
            return slot_pad.reshape(V, -1)
        if bool((slot_pad.any(1) != slot_pad.all(1)).any()):
            raise ValueError("token_layout='objects' pads whole slots: slot_pad must not change over the frames")
        return slot_pad.all(1)  # (V, S)

    def embed_text(self, tokens: torch.Tensor, is_mc: torch.Tensor) -> torch.Tensor:
        """(N, L) ids, (N,) bool -> (N, L, d_model) word tokens with part and modality tags."""
        N, L = tokens.shape
        words = self.q_embedding(tokens)  # (N, L, word_dim)
        in_question = torch.arange(L, device=tokens.device) < self.question_len  # (L,)
        mc_q = (is_mc[:, None] & in_question[None, :])[..., None]  # (N, L, 1)
        # descriptive rows and MC choice parts share the tag [0, 1]; MC question parts get [1, 0]
        part = torch.where(mc_q, self.mc_question_token.to(words.dtype), self.mc_choice_token.to(words.dtype))
        modality = self.text_token.to(words.dtype).expand(N, L, 2)
        return self.q_in_proj(torch.cat([words, part, modality], dim=-1))

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        video: torch.Tensor,
        row_video: torch.Tensor,
        tokens: torch.Tensor,
        pad: torch.Tensor,
        is_mc: torch.Tensor,
        slot_pad: Optional[torch.Tensor] = None,
        slot_mask: Optional[torch.Tensor] = None,
    ) -> dict[str, torch.Tensor]:
        """Answer logits for every text row.

        video (V, T, S, D) slot videos; row_video (N,) which video each row reads; tokens (N, L) word ids;
        pad (N, L) bool (True = PAD); is_mc (N,) bool; slot_pad (V, T, S) bool (True = removed slot, ignored);
        slot_mask (V, T, S) bool (True = hidden behind the mask vector; needs ``slot_prediction``).
        Returns ``answer_logits`` (N, num_answers) (descriptive head) and ``choice_logits`` (N,) (per-choice
        head); callers read the head that matches each row. With ``slot_mask``, also ``masked_slot_prediction``
        (M, D) and ``masked_slot_target`` (M, D): the head's output and the hidden slot at every masked position
        of every row (row-major, then time-major), M = the masked positions summed over rows.
        """
        self._check(video, row_video, tokens)
        N = tokens.shape[0]
        vis = self.embed_video(video)[row_video]  # (N, P, d), P vision tokens: T*S (frames) or S (objects)
        hidden = None
        if slot_mask is not None:
            if not self.slot_prediction:
                raise ValueError("slot_mask needs a reasoner built with slot_prediction=True")
            hidden = slot_mask[row_video].reshape(N, -1)  # (N, T*S) bool
            vis = torch.where(hidden[..., None], self.slot_mask_token.to(vis.dtype), vis)
        text = self.embed_text(tokens, is_mc)  # (N, L, d)
        x = torch.cat([self.CLS.expand(N, 1, -1).to(vis.dtype), vis, text], dim=1)  # (N, 1 + P + L, d)
        vis_pad = self.vision_padding(slot_pad)[row_video] if slot_pad is not None else pad.new_zeros(N, vis.shape[1])
        key_padding = torch.cat([pad.new_zeros(N, 1), vis_pad, pad], dim=1)  # (N, seq_len) bool
        h = self.transformer_encoder(x, key_padding)  # (N, seq_len, d)
        cls = h[:, 0]  # (N, d)
        out = {"answer_logits": self.cls_answer_mlp(cls), "choice_logits": self.mc_answer_mlp(cls).squeeze(-1)}
        if hidden is not None:
            slots_out = h[:, 1 : 1 + vis.shape[1]]  # (N, T*S, d)
            out["masked_slot_prediction"] = self.slot_prediction_head(slots_out[hidden])  # (M, D)
            out["masked_slot_target"] = video[row_video].reshape(N, -1, self.slot_dim)[hidden]  # (M, D)
        return out


def reasoner_losses(out: dict[str, torch.Tensor], label: torch.Tensor, is_mc: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy on descriptive rows + BCE-with-logits on choice rows, weights 1 and 1 (section 6.2).

    A batch without rows of one kind contributes 0 for it, kept in the graph (``0 * logits.sum()``) so that
    every parameter gets a gradient (DDP needs no unused-parameter search).
    """
    desc = ~is_mc
    if bool(desc.any()):
        l_desc = F.cross_entropy(out["answer_logits"][desc].float(), label[desc])
    else:
        l_desc = out["answer_logits"].float().sum() * 0.0
    if bool(is_mc.any()):
        l_mc = F.binary_cross_entropy_with_logits(out["choice_logits"][is_mc].float(), label[is_mc].float())
    else:
        l_mc = out["choice_logits"].float().sum() * 0.0
    return {"loss": l_desc + l_mc, "loss_descriptive": l_desc, "loss_choice": l_mc}


def masked_slot_loss(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared error of the masked-slot prediction (0, kept in the graph, when nothing was masked)."""
    pred, target = out["masked_slot_prediction"], out["masked_slot_target"]
    if pred.numel() == 0:
        return pred.float().sum() * 0.0
    return F.mse_loss(pred.float(), target.float())


def sample_slot_mask(slot_pad: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(V, T, S) bool: each slot token that is not padding hidden with probability ``ratio``."""
    draw = torch.rand(slot_pad.shape, generator=generator)
    return (draw < ratio).to(slot_pad.device) & ~slot_pad


def load_reasoner_state(model: ALOEReasoner, state: dict[str, torch.Tensor], source: str = "of the reasoner") -> None:
    """Load our state_dict or the original ``CLEVRERAloe`` one (keys under ``transformer_model.``), strictly; keys
    or shapes that differ (another vqa.* size) are a one-line user error naming them."""
    pre = "transformer_model."
    if state and all(k.startswith(pre) for k in state):
        state = {k[len(pre) :]: v for k, v in state.items()}
    load_checked(model, state, source)
