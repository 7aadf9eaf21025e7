"""Training windows over slot videos (sections 1.8 and 2.2 of the spec).

Every start frame s in 0 .. T - clip_len is a sample, clip_len = frameskip * (T_h + T_p); the sample holds
frames s, s + fs, ..., s + (T_h + T_p - 1) * fs. For Push-T the action of step i is the chunk of the
``frameskip`` raw actions executed from frame s + i*fs to the next sampled frame, flattened to fs * A values,
and proprio is taken at the sampled frames. Aux inputs are z-scored with :class:`AuxNormalizer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset


@dataclass
class AuxNormalizer:
    """z-scoring of proprio (P,) and action-chunk (chunk * A,) vectors; stored in checkpoints for planning."""

    proprio_mean: np.ndarray
    proprio_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    def state_dict(self) -> dict:
        return {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in self.__dict__.items()}

    @classmethod
    def from_state_dict(cls, sd: dict) -> "AuxNormalizer":
        return cls(**{k: np.asarray(v, dtype=np.float32) for k, v in sd.items()})

    def proprio(self, x: np.ndarray) -> np.ndarray:
        return (x - self.proprio_mean) / self.proprio_std

    def action(self, x: np.ndarray) -> np.ndarray:
        return (x - self.action_mean) / self.action_std

    def action_inverse(self, x: np.ndarray) -> np.ndarray:
        return x * self.action_std + self.action_mean


def _safe_std(std: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(std) & (std > 1e-8), std, 1.0).astype(np.float32)


def fit_aux_normalizer(proprio: list[np.ndarray], action: list[np.ndarray], chunk: int) -> AuxNormalizer:
    """Nan-aware per-frame statistics (each frame counted once; fixes Q8). Action stats tile over the chunk."""
    p = np.concatenate(proprio, axis=0).astype(np.float64)
    a = np.concatenate(action, axis=0).astype(np.float64)
    if not np.isfinite(p).any() or not np.isfinite(a).any():
        raise ValueError("cannot fit aux normalizer: proprio or action data are all NaN")
    a_mean, a_std = np.nanmean(a, axis=0), np.nanstd(a, axis=0)
    return AuxNormalizer(
        proprio_mean=np.nanmean(p, axis=0).astype(np.float32),
        proprio_std=_safe_std(np.nanstd(p, axis=0)),
        action_mean=np.tile(a_mean, chunk).astype(np.float32),
        action_std=_safe_std(np.tile(a_std, chunk)),
    )


class SlotWindows(Dataset):
    """All (video, start) windows of a split. Items: {"slots": (T, S, D)} (+ "proprio", "action")."""

    def __init__(
        self,
        videos: Mapping[str, np.ndarray],
        history_frames: int,
        pred_frames: int,
        frameskip: int,
        *,
        proprio: Optional[Mapping[str, np.ndarray]] = None,
        action: Optional[Mapping[str, np.ndarray]] = None,
        normalizer: Optional[AuxNormalizer] = None,
        max_windows: int = 0,
    ):
        self.videos = videos
        self.keys = list(videos.keys())
        self.steps = history_frames + pred_frames
        self.frameskip = frameskip
        self.clip_len = frameskip * self.steps
        self.proprio, self.action, self.normalizer = proprio, action, normalizer
        if (proprio is None) != (action is None):
            raise ValueError("give both proprio and action (Push-T) or neither")
        starts = []
        for vi, key in enumerate(self.keys):
            n = len(videos[key]) - self.clip_len + 1
            starts.extend((vi, s) for s in range(max(0, n)))
        if not starts:
            raise ValueError(
                "no training windows: every video is shorter than clip_len = frameskip * (T_h + T_p) = "
                f"{self.clip_len} frames"
            )
        index = np.asarray(starts, dtype=np.int64)
        if max_windows and len(index) > max_windows:
            index = index[np.linspace(0, len(index) - 1, max_windows).round().astype(np.int64)]
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def window(self, i: int) -> tuple[str, int]:
        vi, s = self.index[i]
        return self.keys[vi], int(s)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        key, s = self.window(i)
        frames = slice(s, s + self.clip_len, self.frameskip)
        item = {"slots": torch.from_numpy(np.array(self.videos[key][frames], dtype=np.float32))}  # (T, S, D)
        if self.proprio is not None:
            prop = np.asarray(self.proprio[key][frames], dtype=np.float32)  # (T, P)
            act = np.asarray(self.action[key][s : s + self.clip_len], dtype=np.float32)  # (clip_len, A)
            act = act.reshape(self.steps, -1)  # (T, fs * A): the chunk executed after each sampled frame
            if self.normalizer is not None:
                prop, act = self.normalizer.proprio(prop), self.normalizer.action(act)
            item["proprio"] = torch.from_numpy(np.nan_to_num(prop).astype(np.float32))
            item["action"] = torch.from_numpy(np.nan_to_num(act).astype(np.float32))
        return item


def per_split_window_normalizer(ds: SlotWindows) -> AuxNormalizer:
    """The original's statistics: plain mean/std over all (overlapping) windows of one split (Q8)."""
    props, acts = [], []
    for i in range(len(ds)):
        key, s = ds.window(i)
        props.append(np.asarray(ds.proprio[key][s : s + ds.clip_len : ds.frameskip]))
        acts.append(np.asarray(ds.action[key][s : s + ds.clip_len]).reshape(ds.steps, -1))
    p, a = np.concatenate(props), np.concatenate(acts)
    return AuxNormalizer(
        proprio_mean=p.mean(0).astype(np.float32), proprio_std=_safe_std(p.std(0)),
        action_mean=a.mean(0).astype(np.float32), action_std=_safe_std(a.std(0)),
    )
