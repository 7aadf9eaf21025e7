"""C-JEPA losses. These torch functions are the specification the fused kernels are tested against.

Training loss = masked-history MSE + future MSE (+ the proprio-node MSE for Push-T), weights 1:1(:1).
Validation = future MSE of the unmasked ``inference`` path (section 1.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_history_mse(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor,
                       include_t0: bool) -> torch.Tensor:
    """Mean squared error over the masked slots of the history.

    pred, target: (B, T_h, S, D); masked: (B, S) bool. The mean runs over every selected element
    (masked (b, s) pairs x time steps x D), which equals the original's ``F.mse_loss`` on the gathered slots
    when all samples share one masked set. ``include_t0=True`` keeps t=0, where the masked slot was visible
    (the original, Q2); False averages over t = 1..T_h-1 only. With nothing selected the loss is an exact 0
    that still belongs to the graph.
    """
    if not include_t0:
        pred, target = pred[:, 1:], target[:, 1:]
    T, D = pred.shape[1], pred.shape[-1]
    sel = masked[:, None, :, None].to(pred.dtype)  # (B, 1, S, 1)
    count = sel.sum() * T * D
    sq = (pred - target.detach()).pow(2)
    # clamp: with nothing selected the numerator is 0 too; no host sync needed to special-case it.
    return (sq * sel).sum() / count.clamp_min(1)


def future_mse(pred: torch.Tensor, target: torch.Tensor, slot_weights=None) -> torch.Tensor:
    """MSE over all future steps and slots. pred, target: (B, T_p, S, D).

    ``slot_weights`` (S,) (``masking.future_slot_weights``): the weighted mean over slots of each slot's MSE,
    ``sum_s w_s MSE_s / sum_s w_s``; None or empty = the plain MSE (which equal weights reproduce)."""
    if slot_weights is None or len(slot_weights) == 0:
        return F.mse_loss(pred, target.detach())
    w = torch.as_tensor(slot_weights, dtype=pred.dtype, device=pred.device)
    if w.shape != (pred.shape[2],):
        raise ValueError(f"future_mse: {tuple(w.shape)} slot weights for {pred.shape[2]} slots")
    per_slot = (pred - target.detach()).pow(2).mean(dim=(0, 1, 3))  # (S,)
    return (per_slot * w).sum() / w.sum()


def future_mse_relative_to_copy_last(pred: torch.Tensor, target: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Mean over future steps of each step's MSE divided by the copy-last MSE of that step on the same batch.

    pred, target: (B, T_p, S, D); last: (B, S, D), the last history frame. The plain future MSE is dominated by
    the late steps, where slots have moved far; divided by copy-last's error every step weighs as much as the
    ratio a rollout is judged by, so the early steps, where copy-last is nearly right, are not left to noise.
    The denominators are constants of the batch (no gradient).
    """
    per_step = (pred - target.detach()).pow(2).mean(dim=(0, 2, 3))  # (T_p,)
    copy_last = (target - last[:, None]).detach().pow(2).mean(dim=(0, 2, 3))  # (T_p,)
    return (per_step / copy_last.clamp_min(1e-12)).mean()


def predictor_losses(
    pred: torch.Tensor,
    target: torch.Tensor,
    masked: torch.Tensor,
    history_frames: int,
    include_t0: bool,
    num_object_slots: int | None = None,
    future_loss: str = "mse",
    future_slot_weights=None,
) -> dict[str, torch.Tensor]:
    """Named losses of one training step.

    pred, target: (B, T_h + T_p, N, D) where N = S object slots (+ proprio and action nodes for Push-T,
    in which case ``num_object_slots`` = S). masked: (B, S) over object slots.
    Returns ``loss``, ``loss_masked_history``, ``loss_future`` and, for Push-T, ``loss_proprio``
    (the future proprio node against the detached proprio embedding; the future action node gets no loss).
    ``future_slot_weights`` (S,): see :func:`future_mse` (only with ``future_loss="mse"``).
    """
    S = pred.shape[2] if num_object_slots is None else num_object_slots
    T_h = history_frames
    hist = masked_history_mse(pred[:, :T_h, :S], target[:, :T_h, :S], masked, include_t0)
    weighted = future_slot_weights is not None and len(future_slot_weights) > 0
    if weighted and future_loss != "mse":
        raise ValueError("future_slot_weights weighs the plain future MSE; future_loss must be 'mse'")
    fut = future_mse(pred[:, T_h:, :S], target[:, T_h:, :S], future_slot_weights if weighted else None)
    out = {"loss_masked_history": hist, "loss_future": fut}
    if future_loss == "relative_to_copy_last":
        rel = future_mse_relative_to_copy_last(pred[:, T_h:, :S], target[:, T_h:, :S], target[:, T_h - 1, :S])
        out["loss_future_relative"] = rel
        total = hist + rel
    elif future_loss == "mse":
        total = hist + fut
    else:
        raise ValueError(f"unknown future loss {future_loss!r}")
    if num_object_slots is not None:
        prop = F.mse_loss(pred[:, T_h:, S], target[:, T_h:, S].detach())
        out["loss_proprio"] = prop
        total = total + prop
    out["loss"] = total
    return out
