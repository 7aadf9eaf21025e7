"""Rollouts you can watch: predicted slots decoded back to frames and masks, scored per rollout step, and shown.

As SlotFormer does, a slot rollout is judged in pixel space by the encoder's own decoder:

* :func:`decode_slots` turns a (T, S, D) slot sequence into per-slot masks and, for SAVi, the alpha-composited
  RGB reconstruction (its spatial-broadcast decoder). VideoSAUR's decoder rebuilds DINOv2 features, not pixels,
  so it gives masks only; they are shown over the ground-truth frames.
* :func:`step_metrics` scores decoded frames per rollout step: PSNR and SSIM against the ground-truth frames
  (RGB decoders only), FG-ARI (:func:`cjepa.eval.segmentation.fg_ari`, per frame) and mIoU of the hard slot masks
  against the ground-truth instance masks, each object matched to one slot per frame by the Hungarian algorithm
  on IoU (so a permutation of the slots scores the same).
* :func:`comparison_video` lays out ground truth | reconstruction (the encoder's slots of the true frames, the
  best a prediction can look) | prediction, raw frames over mask overlays, for an mp4 and for tensorboard.
* :func:`decoded_rollouts` does it for held-out videos: one window per video, the predictor rolled out from
  ``T_h`` observed slot frames, and the copy-last-frame baseline decoded and scored at the same steps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.tensorboard import SummaryWriter

from cjepa.eval.rollout import roll_chain
from cjepa.eval.segmentation import contingency, fg_ari, hard_slot_ids
from cjepa.eval.slot_vis import frames_to_unit, overlay, palette, to_uint8
from cjepa.models.savi import SAVi
from cjepa.models.videosaur import VideoSAUR
from cjepa.plan.video import label_strip, save_video
from cjepa.utils.checkpoint import resolve_checkpoint
from cjepa.utils.tensorboard import add_video, fresh_log_dir

METRICS = ("psnr", "ssim", "fg_ari", "miou")


# ----------------------------------------------------------------------------------------------- metrics


def psnr(pred: torch.Tensor, gt: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """(N, C, H, W) images in [0, max_val] -> (N,) PSNR in dB (inf for identical images)."""
    mse = ((pred.double() - gt.double()) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(max_val**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(size, size) normalised Gaussian, the window of Wang et al. 2004."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: torch.Tensor, gt: torch.Tensor, max_val: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """(N, C, H, W) images in [0, max_val] -> (N,) mean SSIM (Gaussian window, K1 = 0.01, K2 = 0.03).

    Statistics are taken over valid window positions only (no padding), per channel, and averaged, as in
    skimage's ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``. Images smaller than
    the window use a window of their size.
    """
    x, y = pred.double(), gt.double()
    C = x.shape[1]
    size = min(window, x.shape[-2], x.shape[-1])
    w = gaussian_window(size, sigma).to(x.device).expand(C, 1, size, size)
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=C)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def matched_miou(gt: torch.Tensor, pred: torch.Tensor, num_pred: int) -> torch.Tensor:
    """Per-frame mIoU of slots vs objects. gt, pred (N, H, W) ids -> (N,); NaN for frames without objects.

    Each frame's visible objects (GT id != 0) are matched one-to-one to slots maximising the summed IoU; an
    object left without a slot (more objects than slots) scores 0.
    """
    from scipy.optimize import linear_sum_assignment

    table, _ = contingency(gt.long().flatten(1), pred.flatten(1), num_pred)  # (N, G, S), row 0 = background
    n = table.double()
    inter = n[:, 1:]  # (N, G-1, S)
    area_obj = inter.sum(dim=2, keepdim=True)
    area_slot = n.sum(dim=1, keepdim=True)
    iou = (inter / (area_obj + area_slot - inter).clamp_min(1)).cpu().numpy()
    visible = (area_obj[..., 0] > 0).cpu().numpy()
    out = torch.full((gt.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(gt.shape[0]):
        rows = visible[i].nonzero()[0]
        if len(rows):
            r, c = linear_sum_assignment(iou[i][rows], maximize=True)
            out[i] = float(iou[i][rows][r, c].sum() / len(rows))
    return out


@dataclass
class Decoded:
    """Slots decoded to pixels: soft masks (T, S, h, w) and, for RGB decoders, frames (T, 3, R, R) in [0, 1]."""

    masks: torch.Tensor
    frames: Optional[torch.Tensor] = None


def step_metrics(gt_frames: torch.Tensor, gt_ids: Optional[torch.Tensor], dec: Decoded) -> dict[str, torch.Tensor]:
    """gt_frames (B, T, 3, H, W) in [0, 1], gt_ids (B, T, H, W) or None, decoded (B, T, ...) -> metric -> (B, T).

    PSNR / SSIM need decoded frames (resized to the ground truth's size), FG-ARI / mIoU ground-truth masks;
    what cannot be computed is left out. FG-ARI and mIoU are NaN at frames without objects.
    """
    B, T, _, H, W = gt_frames.shape
    out: dict[str, torch.Tensor] = {}
    if dec.frames is not None:
        f = dec.frames.flatten(0, 1).float()
        if tuple(f.shape[-2:]) != (H, W):
            f = F.interpolate(f, size=(H, W), mode="bilinear", align_corners=False)
        g = gt_frames.flatten(0, 1).float()
        out["psnr"] = psnr(f.clamp(0, 1), g).view(B, T)
        out["ssim"] = ssim(f.clamp(0, 1), g).view(B, T)
    if gt_ids is not None:
        S = dec.masks.shape[2]
        ids = hard_slot_ids(dec.masks, (H, W))  # (B, T, H, W)
        ari, _ = fg_ari(gt_ids, ids, S, per="frame")
        out["fg_ari"] = ari.view(B, T)
        out["miou"] = matched_miou(gt_ids.flatten(0, 1), ids.flatten(0, 1), S).view(B, T)
    return out


def mean_per_step(values: torch.Tensor) -> list[float]:
    """(B, T) -> T means over the batch, ignoring NaN (frames without objects); NaN where all are."""
    v = values.double()
    ok = ~torch.isnan(v)
    s = torch.where(ok, v, torch.zeros_like(v)).sum(dim=0)
    c = ok.sum(dim=0)
    return torch.where(c > 0, s / c.clamp_min(1), torch.full_like(s, float("nan"))).tolist()


# ----------------------------------------------------------------------------------------------- decoding


@torch.no_grad()
def decode_slots(encoder, slots: torch.Tensor) -> Decoded:
    """slots (T, S, D) -> :class:`Decoded` with the encoder's decoder (SAVi: RGB + alpha masks; VideoSAUR: masks)."""
    slots = slots.to(next(encoder.parameters()).device, torch.float32)
    if isinstance(encoder, SAVi):
        recon, masks = encoder.decode(slots)  # (T, 3, R, R) in [-1, 1], (T, S, R, R)
        return Decoded(masks=masks.float().cpu(), frames=((recon.float() + 1) / 2).clamp(0, 1).cpu())
    if isinstance(encoder, VideoSAUR):
        m = encoder.decoder.masks(slots)  # (T, S, P): the decoder's mixing weights over patches
        return Decoded(masks=m.unflatten(-1, (encoder.grid, encoder.grid)).float().cpu())
    raise TypeError(f"no slot decoder for encoder {type(encoder).__name__} (SAVi and VideoSAUR have one)")


# ----------------------------------------------------------------------------------------------- pictures


def id_overlay(frames01: torch.Tensor, ids: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """frames (T, 3, H, W) in [0, 1] tinted by ground-truth ids (T, H, W); background (0) left as is."""
    ids = ids.long().cpu()
    colours = palette(int(ids.max()) + 1)[ids].permute(0, 3, 1, 2)  # (T, 3, H, W)
    fg = (ids > 0)[:, None].float()
    return frames01.cpu() * (1 - alpha * fg) + alpha * fg * colours


def comparison_video(gt_frames: torch.Tensor, gt_ids: Optional[torch.Tensor], recon: Decoded, pred: Decoded,
                     scale: int = 4) -> np.ndarray:
    """One clip's frames (T, 3, H, W) in [0, 1] -> uint8 (T, H', W', 3): a label strip over two rows of three
    panels, ground truth | reconstruction | prediction; top row the frames (a masks-only decoder shows the ground
    truth there), bottom row the same frames tinted by argmax slot (ground truth: by object id)."""
    T, _, H, W = gt_frames.shape
    g = gt_frames.float().cpu()

    def rgb(d: Decoded) -> torch.Tensor:
        if d.frames is None:
            return g
        f = d.frames.float()
        return f if tuple(f.shape[-2:]) == (H,
                                            W) else F.interpolate(f, size=(H, W), mode="bilinear", align_corners=False)

    r, p = rgb(recon), rgb(pred)
    top = torch.cat([g, r, p], dim=-1)
    gt_tint = id_overlay(g, gt_ids) if gt_ids is not None else g
    bottom = torch.cat([gt_tint, overlay(r, recon.masks), overlay(p, pred.masks)], dim=-1)
    grid = torch.cat([top, bottom], dim=-2).clamp(0, 1)  # (T, 3, 2H, 3W)
    if scale > 1:
        grid = F.interpolate(grid, scale_factor=scale, mode="nearest")
    frames = to_uint8(grid)  # (T, 2H', 3W', 3)
    strip = label_strip(["ground truth", "reconstruction", "prediction"], W * scale)
    return np.concatenate([np.broadcast_to(strip, (T, *strip.shape)), frames], axis=1)


def trained_step(checkpoint) -> int:
    """The optimizer step a checkpoint (or a run directory's latest) was saved at; 0 for a bare state_dict file,
    which records none. Clips of a model are logged at this step, next to its training curves."""
    meta = Path(resolve_checkpoint(checkpoint)) / "meta.json"
    return int(json.loads(meta.read_text())["step"]) if meta.is_file() else 0


# ----------------------------------------------------------------------------------------------- held-out rollouts


@dataclass
class RolloutWindow:
    """The frames one decoded rollout compares: slot indices (T_h + horizon,) and their video frame indices."""

    slot_index: np.ndarray
    frame_index: np.ndarray


def rollout_window(num_slot_frames: int, num_video_frames: int, *, history: int, horizon: int, frameskip: int,
                   frame_stride: int) -> Optional[RolloutWindow]:
    """The first window of a video (slots stored every ``frame_stride`` video frames, stepped ``frameskip``)."""
    idx = frameskip * np.arange(history + horizon)
    if idx[-1] >= num_slot_frames or idx[-1] * frame_stride >= num_video_frames:
        return None
    return RolloutWindow(idx, idx * frame_stride)


@torch.no_grad()
def decoded_rollouts(
    encoder,
    predictor,
    slot_videos: Mapping[str, np.ndarray],
    video_source,
    *,
    history: int,
    pred_frames: int,
    chains: int,
    frameskip: int,
    frame_stride: int,
    max_videos: int,
    out_dir: Path,
    tb_dir: Optional[Path] = None,
    step: int = 0,
    max_clips: int = 2,
) -> dict:
    """Roll the predictor out on up to ``max_videos`` held-out videos, decode, score per step, save clips.

    Returns ``{"steps", "videos", "clips": [paths], "tb": [tensorboard tags], "predictor" / "copy_last" /
    "reconstruction": {metric: per-step means}}``; the first ``max_clips`` videos are written to ``out_dir`` as
    mp4 (``cjepa.plan.video.save_video``) and, with a ``tb_dir``, logged there as tensorboard videos
    ``rollout_video/<key>`` at ``step`` (the predictor's trained step). ``tb_dir`` holds these clips alone and is
    rewritten whole: decoding again replaces its event file instead of adding a second set of clips.
    """
    horizon = chains * pred_frames
    device = next(predictor.parameters()).device
    scores: dict[str, dict[str, list[torch.Tensor]]] = {k: {} for k in ("predictor", "copy_last", "reconstruction")}
    clips, shown, used = [], [], 0
    for item in video_source.iter_videos():
        if used >= max_videos:
            break
        if item.key not in slot_videos:
            continue
        slots = torch.from_numpy(np.array(slot_videos[item.key], np.float32))  # (T_slots, S, D)
        win = rollout_window(len(slots), item.frames.shape[0], history=history, horizon=horizon, frameskip=frameskip,
                             frame_stride=frame_stride)
        if win is None:
            continue
        used += 1
        # (T_h, S, D), (horizon, S, D)
        hist, true_future = slots[win.slot_index[:history]], slots[win.slot_index[history:]]
        pred = roll_chain(predictor.inference, hist[None].to(device), horizon, history)[0].float().cpu()
        fidx = torch.as_tensor(win.frame_index[history:])
        gt = frames_to_unit(item.frames[fidx].float())  # (horizon, 3, H, W)
        gt_ids = None if item.masks is None else item.masks[fidx].long()
        decoded = {"predictor": decode_slots(encoder, pred),
                   "copy_last": decode_slots(encoder, hist[-1:].expand(horizon, -1, -1)),
                   "reconstruction": decode_slots(encoder, true_future)}
        for name, dec in decoded.items():
            m = step_metrics(gt[None], None if gt_ids is None else gt_ids[None],
                             Decoded(dec.masks[None], None if dec.frames is None else dec.frames[None]))
            for k, v in m.items():
                scores[name].setdefault(k, []).append(v)
        if len(clips) < max_clips:
            video = comparison_video(gt, gt_ids, decoded["reconstruction"], decoded["predictor"])
            clips.append(str(save_video(video, Path(out_dir) / f"rollout_{item.key}.mp4", fps=4)))
            shown.append((f"rollout_video/{item.key}", video))
    if used == 0:
        raise ValueError(f"no held-out video is long enough for a decoded rollout of {history} + {horizon} steps at "
                         f"frameskip {frameskip}")
    if tb_dir is not None:
        with SummaryWriter(str(fresh_log_dir(tb_dir))) as writer:
            for tag, video in shown:
                add_video(writer, tag, video, step, fps=4)
    result: dict = {"steps": horizon, "videos": used, "clips": clips, "tb": [tag for tag, _ in shown] if tb_dir else []}
    for name, per in scores.items():
        result[name] = {k: mean_per_step(torch.cat(v)) for k, v in per.items()}
    return result


def summary_line(res: dict) -> str:
    """One line: each metric's mean over steps for the predictor, copy-last and the reconstruction."""
    def mean(xs: list[float]) -> float:
        return float("nan") if all(np.isnan(xs)) else float(np.nanmean(xs))

    names = {"psnr": "PSNR", "ssim": "SSIM", "fg_ari": "FG-ARI", "miou": "mIoU"}
    parts = [f"{names[k]} " + " | ".join(f"{mean(res[n][k]):.3f}" for n in ("predictor", "copy_last", "reconstruction"))
             for k in METRICS if k in res["predictor"]]
    return (f"decoded rollouts ({res['videos']} videos x {res['steps']} steps; predictor | copy-last | "
            "reconstruction): "
            + ", ".join(parts))
