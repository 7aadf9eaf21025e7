"""Autoregressive slot rollouts.

CLEVRER protocol (section 1.9): videos of ``obs_frames`` (128) observed frames are extended to ``target_frames``
(160). A predictor trained at frameskip fs only steps fs frames at a time, so fs interleaved chains run side by
side: chain o starts from the history frames ``obs - T_h*fs + o, ..., step fs`` and is rolled forward
(T_p frames per call, the last T_h predicted frames becoming the next history) until it covers
ceil((target - obs) / fs) frames; output frame ``obs + i`` is frame ``i // fs`` of chain ``i % fs``.

Also the rollout-error evaluation: per-step MSE of autoregressive predictions against held-out ground truth,
next to the copy-last-frame baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Callable, Optional

import numpy as np
import torch


def chain_history_indices(obs_frames: int, history_frames: int, frameskip: int, offset: int) -> list[int]:
    """Observed frame indices that seed chain ``offset``: obs - T_h*fs + offset, ..., step fs (T_h of them)."""
    start = obs_frames - history_frames * frameskip + offset
    if start < 0:
        raise ValueError(f"{obs_frames} observed frames are too few for T_h={history_frames} at frameskip {frameskip}")
    return list(range(start, obs_frames, frameskip))


def interleave_source(i: int, frameskip: int) -> tuple[int, int]:
    """Predicted frame obs+i comes from (chain i % fs, position i // fs)."""
    return i % frameskip, i // frameskip


def roll_chain(step_fn: Callable[[torch.Tensor], torch.Tensor], history: torch.Tensor, num_frames: int,
               history_frames: int) -> torch.Tensor:
    """Call ``step_fn`` (history (B, T_h, S, D) -> (B, T_p, S, D)) until ``num_frames`` frames are predicted."""
    preds, cur, have = [], history, 0
    while have < num_frames:
        p = step_fn(cur)
        preds.append(p)
        have += p.shape[1]
        T_p = p.shape[1]
        cur = torch.cat([cur[:, T_p:], p], dim=1) if cur.shape[1] > T_p else p[:, -history_frames:]
    return torch.cat(preds, dim=1)[:, :num_frames]


@torch.no_grad()
def rollout_interleaved(predictor, slots: torch.Tensor, target_frames: int, frameskip: int) -> torch.Tensor:
    """slots (B, obs, S, D) -> (B, target_frames, S, D): observed frames copied, the rest predicted."""
    B, obs, S, D = slots.shape
    T_h = predictor.history_frames
    out = slots.new_zeros(B, target_frames, S, D)
    out[:, :obs] = slots
    missing = target_frames - obs
    if missing <= 0:
        return out[:, :target_frames]
    per_chain = math.ceil(missing / frameskip)
    chains = [
        roll_chain(predictor.inference, slots[:, chain_history_indices(obs, T_h, frameskip, o)], per_chain, T_h)
        for o in range(frameskip)
    ]
    for i in range(missing):
        o, pos = interleave_source(i, frameskip)
        out[:, obs + i] = chains[o][:, pos]
    return out


def rollout_split(predictor, videos: Mapping[str, np.ndarray], *, obs_frames: int, target_frames: int, frameskip: int,
                  batch_size: int, device, progress=None):
    """Roll every video of a split out; yields (key, (target_frames, S, D) float32 array) in key order."""
    keys = list(videos.keys())
    for b in range(0, len(keys), batch_size):
        chunk = keys[b : b + batch_size]
        arrs = []
        for k in chunk:
            v = np.asarray(videos[k], dtype=np.float32)
            if len(v) < obs_frames:
                raise ValueError(f"video {k!r} has {len(v)} frames; rollout needs {obs_frames} observed frames")
            arrs.append(v[:obs_frames])
        batch = torch.from_numpy(np.stack(arrs)).to(device)
        out = rollout_interleaved(predictor, batch, target_frames, frameskip).float().cpu().numpy()
        for k, o in zip(chunk, out):
            yield k, o
        if progress is not None:
            progress.update(len(chunk))


def eval_windows(num_frames: int, needed: int, per_video: int) -> list[int]:
    """Up to ``per_video`` evenly spaced start frames of windows of length ``needed``."""
    last = num_frames - needed
    if last < 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, last, per_video)})


@torch.no_grad()
def rollout_error(
    step_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    videos: Mapping[str, np.ndarray],
    *,
    history_frames: int,
    pred_frames: int,
    frameskip: int,
    chains: int,
    max_videos: int,
    device,
    windows_per_video: int = 4,
    target_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> dict[str, list[float]]:
    """Per-step MSE of an autoregressive rollout vs ground truth, and of copying the last history frame.

    ``step_fn(history (B, T_h, N, D), true_future (B, T_p, N, D)) -> (B, T_p, N, D)`` predicts one chunk; it
    may copy known inputs from the true future (Push-T's action nodes) and nothing else. The error covers
    ``chains * T_p`` steps of fs frames each; ``target_fn`` selects what is compared (default: everything).
    """
    T_h, T_p, fs = history_frames, pred_frames, frameskip
    horizon = chains * T_p
    needed = (T_h + horizon - 1) * fs + 1
    hist, fut = [], []
    for key in list(videos.keys())[:max_videos]:
        v = np.asarray(videos[key], dtype=np.float32)
        for s in eval_windows(len(v), needed, windows_per_video):
            idx = s + fs * np.arange(T_h + horizon)
            hist.append(v[idx[:T_h]])
            fut.append(v[idx[T_h:]])
    if not hist:
        raise ValueError(f"no video is long enough for a rollout-error window of {needed} frames")
    h = torch.from_numpy(np.stack(hist)).to(device)
    gt = torch.from_numpy(np.stack(fut)).to(device)  # (W, horizon, N, D)
    cur, preds = h, []
    for c in range(chains):
        p = step_fn(cur, gt[:, c * T_p : (c + 1) * T_p])
        preds.append(p)
        cur = torch.cat([cur[:, T_p:], p], dim=1) if cur.shape[1] > T_p else p[:, -T_h:]
    pred = torch.cat(preds, dim=1)
    base = h[:, -1:].expand_as(gt)
    sel = target_fn or (lambda x: x)
    err = ((sel(pred) - sel(gt)) ** 2).flatten(2).mean(dim=(0, 2))
    err_b = ((sel(base) - sel(gt)) ** 2).flatten(2).mean(dim=(0, 2))
    return {"mse": err.tolist(), "baseline_mse": err_b.tolist(), "windows": len(hist)}
