"""Segmentation quality of slot masks against ground-truth instance masks: FG-ARI, mBO, slot -> object ids.

Conventions (those of VideoSAUR's metrics, itself after SAVi's):

* Slot masks (..., S, h, w) are soft; they are upsampled bilinearly to the ground-truth resolution and each pixel
  goes to its argmax slot (:func:`hard_slot_ids`).
* **FG-ARI**: adjusted Rand index between ground-truth ids and slot ids over foreground pixels (GT id != 0).
  ``per="video"`` pools all frames of a clip (a slot must keep its object over time); ``per="frame"`` scores
  frames independently. If both labelings put every pixel in one cluster, or every cluster holds at most one
  pixel, the ARI is 1 (its denominator is 0). Samples without foreground are excluded (``valid`` False).
* **mBO**: for every ground-truth object, the best IoU with any slot; averaged over the objects of a sample
  (background excluded), then over samples.
* **Slot-identity swap rate**: per frame, the ground-truth objects are bound to slots by Hungarian matching on
  pixel overlap (:func:`hungarian_bindings`); a frame counts as a swap when the binding of any object visible in
  it and in the previous frame differs from the previous frame's (:func:`swap_rate`). FG-ARI over a video falls
  both when slots cut objects badly and when they swap; the swap rate tells the second apart, and it is what
  makes a copy-last-frame baseline on slots jump.

Everything is computed from integer contingency tables (``bincount``), so memory stays O(pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hard_slot_ids(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Soft masks (..., S, h, w) -> int64 slot id per pixel (..., H, W) at `size` (bilinear upsampling, argmax)."""
    lead, (S, h, w) = masks.shape[:-3], masks.shape[-3:]
    m = masks.reshape(-1, S, h, w).float()
    if (h, w) != tuple(size):
        m = F.interpolate(m, size=tuple(size), mode="bilinear", align_corners=False)
    return m.argmax(dim=1).view(*lead, *size)


def _compact_ids(gt: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary non-negative ids to 0..G-1 keeping 0 as 0 (so background stays background)."""
    gt = gt.long()
    if (gt < 0).any():
        raise ValueError("ground-truth ids must be >= 0 (0 = background)")
    uniq = torch.unique(torch.cat([gt.new_zeros(1), gt.flatten()]))  # sorted, starts with 0
    return torch.searchsorted(uniq, gt), int(uniq.numel())


def contingency(gt: torch.Tensor, pred: torch.Tensor, num_pred: int) -> tuple[torch.Tensor, int]:
    """gt, pred (N, P) ints -> counts (N, G, num_pred) int64 with G compacted ground-truth ids (0 = background)."""
    if gt.shape != pred.shape or gt.dim() != 2:
        raise ValueError(f"gt and pred must both be (N, P); got {tuple(gt.shape)} and {tuple(pred.shape)}")
    g, G = _compact_ids(gt)
    N, P = g.shape
    pred = pred.long()
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_pred):
        raise ValueError(f"pred ids must be in [0, {num_pred})")
    idx = (torch.arange(N, device=g.device)[:, None] * G + g) * num_pred + pred
    counts = torch.bincount(idx.flatten(), minlength=N * G * num_pred)
    return counts.view(N, G, num_pred), G


def ari_from_contingency(table: torch.Tensor) -> torch.Tensor:
    """(N, G, K) counts -> ARI (N,) in float64 (1.0 where the ARI denominator vanishes)."""
    n = table.double()
    a = n.sum(dim=2)  # (N, G)
    b = n.sum(dim=1)  # (N, K)
    total = a.sum(dim=1)
    rindex = (n * (n - 1)).sum(dim=(1, 2))
    aindex = (a * (a - 1)).sum(dim=1)
    bindex = (b * (b - 1)).sum(dim=1)
    expected = aindex * bindex / (total * (total - 1)).clamp_min(1)
    max_index = (aindex + bindex) / 2
    denom = max_index - expected
    ari = (rindex - expected) / torch.where(denom != 0, denom, torch.ones_like(denom))
    return torch.where(denom != 0, ari, torch.ones_like(ari))


def _flatten(gt: torch.Tensor, pred: torch.Tensor, per: str) -> tuple[torch.Tensor, torch.Tensor]:
    if gt.shape != pred.shape or gt.dim() != 4:
        raise ValueError(f"gt and pred ids must both be (B, T, H, W); got {tuple(gt.shape)} and {tuple(pred.shape)}")
    if per == "video":
        return gt.flatten(1), pred.flatten(1)
    if per == "frame":
        return gt.flatten(0, 1).flatten(1), pred.flatten(0, 1).flatten(1)
    raise ValueError(f"per={per!r}: choose 'video' or 'frame'")


def fg_ari(gt: torch.Tensor, pred: torch.Tensor, num_pred: int,
           per: str = "video") -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground ARI. gt, pred (B, T, H, W) ids -> (values, valid) per video (B,) or per frame (B*T,).

    ``valid`` is False for samples without foreground pixels (their value is meaningless and set to NaN).
    """
    g, p = _flatten(gt, pred, per)
    table, _ = contingency(g, p, num_pred)
    fg = table[:, 1:]  # drop the background row: ARI over foreground pixels only
    valid = fg.sum(dim=(1, 2)) > 0
    ari = ari_from_contingency(fg)
    return torch.where(valid, ari, torch.full_like(ari, float("nan"))), valid


def ari(gt: torch.Tensor, pred: torch.Tensor, num_pred: int, per: str = "video") -> torch.Tensor:
    """ARI over all pixels (background as one more cluster)."""
    g, p = _flatten(gt, pred, per)
    return ari_from_contingency(contingency(g, p, num_pred)[0])


def mbo(gt: torch.Tensor, pred: torch.Tensor, num_pred: int, per: str = "video") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean best overlap. gt, pred (B, T, H, W) ids -> (values, valid) as :func:`fg_ari`."""
    g, p = _flatten(gt, pred, per)
    table, _ = contingency(g, p, num_pred)
    n = table[:, 1:].double()  # (N, G-1, K) foreground objects x slots
    area_obj = n.sum(dim=2, keepdim=True)  # (N, G-1, 1)
    area_slot = table.double().sum(dim=1, keepdim=True)  # (N, 1, K) slot area incl. background pixels
    iou = n / (area_obj + area_slot - n).clamp_min(1)
    present = area_obj[..., 0] > 0  # objects that occur in this sample
    best = iou.max(dim=2).values  # (N, G-1)
    count = present.sum(dim=1)
    valid = count > 0
    value = (best * present).sum(dim=1) / count.clamp_min(1)
    return torch.where(valid, value, torch.full_like(value, float("nan"))), valid


def slot_object_ids(gt: torch.Tensor, pred: torch.Tensor, num_pred: int) -> torch.Tensor:
    """Which ground-truth object each slot holds, per frame. gt, pred (T, H, W) -> int64 (T, S); -1 = none.

    Each visible object is assigned to the slot that holds most of its pixels; a slot then carries the id of the
    largest object assigned to it (original ids, not compacted), or -1 if no object chose it (background slots).
    """
    if gt.dim() != 3 or gt.shape != pred.shape:
        raise ValueError(f"gt and pred must both be (T, H, W); got {tuple(gt.shape)} and {tuple(pred.shape)}")
    gt_long = gt.long()
    uniq = torch.unique(torch.cat([gt_long.new_zeros(1), gt_long.flatten()]))
    table, G = contingency(gt_long.flatten(1), pred.flatten(1), num_pred)  # (T, G, S)
    obj = table[:, 1:]  # (T, G-1, S)
    if obj.shape[1] == 0:
        return torch.full((gt.shape[0], num_pred), -1, dtype=torch.long, device=gt.device)
    pixels = obj.sum(dim=2)  # (T, G-1)
    best_slot = obj.argmax(dim=2)  # (T, G-1)
    chosen = torch.nn.functional.one_hot(best_slot, num_pred).bool() & (pixels > 0)[..., None]  # (T, G-1, S)
    score = torch.where(chosen, obj, torch.full_like(obj, -1))
    best_obj = score.argmax(dim=1)  # (T, S) index into foreground ids
    has = chosen.any(dim=1)
    ids = uniq[1:][best_obj]
    return torch.where(has, ids, torch.full_like(ids, -1))


def hungarian_bindings(gt: torch.Tensor, pred: torch.Tensor, num_pred: int) -> torch.Tensor:
    """Slot bound to each ground-truth object, per frame. gt, pred (T, H, W) -> int64 (T, G); -1 = object absent.

    Columns are the video's foreground ids in increasing order (the same object in every frame). Per frame, the
    visible objects are matched one-to-one to slots maximising the summed pixel overlap (Hungarian; a slot holds
    at most one object, so two objects merged into one slot cannot both keep it).
    """
    from scipy.optimize import linear_sum_assignment

    if gt.dim() != 3 or gt.shape != pred.shape:
        raise ValueError(f"gt and pred must both be (T, H, W); got {tuple(gt.shape)} and {tuple(pred.shape)}")
    table, G = contingency(gt.long().flatten(1), pred.flatten(1), num_pred)  # (T, G, S), G counts the background
    obj = table[:, 1:].cpu().numpy()
    out = torch.full((gt.shape[0], G - 1), -1, dtype=torch.long)
    for t in range(obj.shape[0]):
        visible = obj[t].sum(axis=1) > 0
        if not visible.any():
            continue
        rows = visible.nonzero()[0]
        r, c = linear_sum_assignment(obj[t][rows], maximize=True)
        out[t, torch.as_tensor(rows[r])] = torch.as_tensor(c, dtype=torch.long)
    return out.to(gt.device)


def swap_rate(bindings: torch.Tensor) -> tuple[int, int]:
    """(swaps, comparable frames) of one video's bindings (T, G) from :func:`hungarian_bindings`.

    Frame t >= 1 is comparable when some object is bound in both t - 1 and t, and a swap when any such object's
    slot changed. An object leaving and re-entering the view is compared with its last frame before leaving
    only if that was t - 1, so occlusions neither count as swaps nor hide later ones.
    """
    if bindings.dim() != 2:
        raise ValueError(f"bindings must be (T, G); got {tuple(bindings.shape)}")
    prev, cur = bindings[:-1], bindings[1:]
    both = (prev >= 0) & (cur >= 0)
    comparable = both.any(dim=1)
    swapped = (both & (prev != cur)).any(dim=1)
    return int(swapped.sum()), int(comparable.sum())


def segmentation_scores(gt_masks: torch.Tensor, slot_masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """GT ids (B, T, H, W) + soft slot masks (B, T, S, h, w) -> per-video FG-ARI / mBO, per-frame FG-ARI and the
    slot-identity swap rate (swaps over comparable frames, pooled over the batch).

    Returns sums and counts (float64 tensors) so callers can average across batches and ranks exactly.
    """
    S = slot_masks.shape[2]
    pred = hard_slot_ids(slot_masks, tuple(gt_masks.shape[-2:]))
    out: dict[str, torch.Tensor] = {}
    for name, fn, per in (("fg_ari", fg_ari, "video"), ("fg_ari_frame", fg_ari, "frame"), ("mbo", mbo, "video")):
        v, ok = fn(gt_masks, pred, S, per)
        out[name + "_sum"] = torch.nan_to_num(v[ok]).sum().double()
        out[name + "_count"] = ok.sum().double()
    swaps = frames = 0
    for b in range(gt_masks.shape[0]):
        n, m = swap_rate(hungarian_bindings(gt_masks[b], pred[b], S))
        swaps, frames = swaps + n, frames + m
    out["swap_rate_sum"] = torch.tensor(float(swaps), dtype=torch.float64, device=gt_masks.device)
    out["swap_rate_count"] = torch.tensor(float(frames), dtype=torch.float64, device=gt_masks.device)
    return out
