"""Slot windows for questions: which frames a question reads, under which protocol, batched for the reasoner.

Frame sampling (``vqa.frame_sampling``):

* ``offsets`` (section 6.1, the original): ``num_frames`` (25) frames, ``video_len // num_frames`` (5) apart, from
  a start offset in ``0 .. video_len - (num_frames - 1) * offset - 1`` (0..7 for CLEVRER). Training draws the
  offset per question from a generator seeded by (run seed, epoch), so a resumed run sees the same offsets;
  evaluation uses fixed offsets (Q7). The frames never reach both ends of the video: an event before the start
  or after the last sampled frame is invisible, so questions about "all collisions" are not decidable from them
  (on 48-frame billiards videos a perfect observer of 8 such frames answers 93 % of the descriptive questions and
  94 % of the predictive choices right, of frames spread over the video 100 %: ``benchmarks/vqa_ceiling.py
  --observer``).
* ``span``: ``num_frames`` frames spread over the whole ``video_len`` (rounded ``linspace(0, video_len - 1)``),
  first and last frame included, one start offset (0). Every event of the observed frames lies between two
  sampled frames, which is what a ceiling (``protocol=oracle``) needs.

Protocols (``vqa.protocol``):

* ``original`` -- the released pipeline. Every question reads the slot video given (observed frames, plus the
  predictor's rollout beyond ``video_len``). Only predictive questions move their window: by ``T - video_len``
  when the video is longer than ``video_len`` (the original tests ``T > 150``; identical for T = 160), i.e.
  frames 32+start .. 152+start, of which 5-7 are predicted (Q6, Q22). Descriptive, explanatory and
  counterfactual questions see observed frames only, whatever the predictor.
* ``oracle`` -- the world as a perfect world model: ``vqa.slots`` holds the true slots of every simulated frame
  (predictive questions read the simulator's own future) and ``vqa.cf_slots`` the simulator's re-run without
  the removed object (``cjepa vqa make-billiards --oracle`` writes both). Read as ``counterfactual_rollout``,
  except that a counterfactual question without its re-run is an error, not a fallback: a ceiling answered
  partly from the factual video would be no ceiling.
* ``counterfactual_rollout`` -- as ``original``, except counterfactual questions read the world model's
  counterfactual video for the object the question removes (a separate store built by
  :func:`cjepa.eval.vqa.rollouts.build_counterfactual_store`; the removed slot is padding, ignored by
  attention). Questions whose removed object could not be resolved or has no counterfactual video fall back
  to the factual video and are counted (``cf_fallback``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from cjepa.data.sampler import StepBatchSampler
from cjepa.eval.vqa.questions import DESCRIPTIVE, PREDICTIVE, QuestionSet


class VQADataError(ValueError):
    """Slots for a question are missing or too short; the message names the video and question."""


FRAME_SAMPLINGS = ("offsets", "span")


def frame_offset(video_len: int, num_frames: int) -> int:
    return video_len // num_frames


def num_start_offsets(video_len: int, num_frames: int, sampling: str = "offsets") -> int:
    """How many start offsets fit: video_len - (num_frames - 1) * offset (8 for 128 frames, 25 samples); 1 for span."""
    if sampling == "span":
        return 1
    return video_len - (num_frames - 1) * frame_offset(video_len, num_frames)


def frame_indices(
    start: int, video_frames: int, qtype: int, video_len: int, num_frames: int, sampling: str = "offsets"
) -> np.ndarray:
    """Frames a question reads from a video of ``video_frames`` frames (predictive: shifted past video_len)."""
    shift = video_frames - video_len if (qtype == PREDICTIVE and video_frames > video_len) else 0
    if sampling == "span":
        return start + shift + np.rint(np.linspace(0, video_len - 1, num_frames)).astype(np.int64)
    if sampling != "offsets":
        raise ValueError(f"frame sampling {sampling!r} is not one of {FRAME_SAMPLINGS}")
    return start + shift + frame_offset(video_len, num_frames) * np.arange(num_frames)


def video_key_candidates(scene_index: int, video_filename: str) -> list[str]:
    """Slot-store keys a CLEVRER question's video may have: the file name itself, the VideoSAUR pickle's
    ``{i}_pixels.mp4``, the SAVi pickle's ``video_XXXXX.mp4``, and bare stems / indices."""
    stem = Path(video_filename).stem
    return [
        video_filename,
        f"{scene_index}_pixels.mp4",
        f"video_{scene_index:05d}.mp4",
        stem,
        str(scene_index),
        f"{scene_index:05d}",
        f"video_{scene_index:05d}",
    ]


def resolve_video_keys(qs: QuestionSet, available: set[str]) -> list[Optional[str]]:
    """The slot key of every question's video, or None where no candidate exists."""
    cache: dict[tuple[int, str], Optional[str]] = {}
    out = []
    for s, f in zip(qs.scene_index.tolist(), qs.video_filename):
        if (s, f) not in cache:
            cache[(s, f)] = next((k for k in video_key_candidates(s, f) if k in available), None)
        out.append(cache[(s, f)])
    return out


class VQADataset(Dataset):
    """Item ``(question index, start offset)`` -> the question's slot window and its text rows."""

    def __init__(
        self,
        questions: QuestionSet,
        videos: Mapping[str, np.ndarray],
        video_keys: list[str],
        *,
        video_len: int,
        num_frames: int,
        cf_videos: Optional[Mapping[str, np.ndarray]] = None,
        cf_keys: Optional[list[Optional[str]]] = None,
        sampling: str = "offsets",
    ):
        if len(video_keys) != len(questions):
            raise ValueError(f"{len(video_keys)} video keys for {len(questions)} questions")
        self.qs, self.videos, self.video_keys = questions, videos, video_keys
        self.video_len, self.num_frames = video_len, num_frames
        self.cf_videos = cf_videos
        self.cf_keys = cf_keys if cf_keys is not None else [None] * len(questions)
        self.sampling = sampling
        self.num_starts = num_start_offsets(video_len, num_frames, sampling)
        first = np.asarray(videos[video_keys[0]])
        self.num_slots, self.slot_dim = int(first.shape[1]), int(first.shape[2])

    def __len__(self) -> int:
        return len(self.qs)

    @property
    def cf_from_rollout(self) -> int:
        return sum(k is not None for k in self.cf_keys)

    def _window(self, q: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        cf_key = self.cf_keys[q]
        key = cf_key if cf_key is not None else self.video_keys[q]
        source = self.cf_videos if cf_key is not None else self.videos
        arr = source[key]  # (T, S, D), memory-mapped for stores
        idx = frame_indices(start, len(arr), int(self.qs.qtype[q]), self.video_len, self.num_frames, self.sampling)
        if idx[-1] >= len(arr) or idx[0] < 0:
            raise VQADataError(
                f"video {key!r} has {len(arr)} frames; question {int(self.qs.question_id[q])} of scene "
                f"{int(self.qs.scene_index[q])} (start offset {start}) needs frames {idx[0]}..{idx[-1]}"
            )
        slots = np.asarray(arr[idx], dtype=np.float32)  # (num_frames, S, D)
        if slots.shape[1:] != (self.num_slots, self.slot_dim):
            raise VQADataError(f"video {key!r} has slots {slots.shape[1:]}, expected {(self.num_slots, self.slot_dim)}")
        if cf_key is not None:
            present = np.asarray(source.extra(cf_key, "present")[idx])  # (num_frames, S), 1 kept / 0 removed
            slot_pad = present < 0.5
        else:
            slot_pad = np.zeros(slots.shape[:2], dtype=bool)
        return slots, slot_pad

    def __getitem__(self, item: tuple[int, int]) -> dict:
        q, start = int(item[0]), int(item[1])
        slots, slot_pad = self._window(q, start)
        rows = self.qs.rows_of(q)
        n = rows.stop - rows.start
        return {
            "q": q,
            "start": start,
            "video": slots,
            "slot_pad": slot_pad,
            "tokens": self.qs.tokens[rows],
            "pad": self.qs.pad[rows],
            "label": self.qs.label[rows],
            "is_mc": np.full(n, int(self.qs.qtype[q]) != DESCRIPTIVE),
        }


def collate_questions(items: list[dict]) -> dict[str, torch.Tensor]:
    """Questions -> one batch: videos (V, T, S, D) one per question, text rows (N, L) with ``row_video``."""
    counts = torch.tensor([len(it["label"]) for it in items])
    return {
        "q": torch.tensor([it["q"] for it in items], dtype=torch.long),
        "start": torch.tensor([it["start"] for it in items], dtype=torch.long),
        "video": torch.from_numpy(np.stack([it["video"] for it in items])),
        "slot_pad": torch.from_numpy(np.stack([it["slot_pad"] for it in items])),
        "row_video": torch.repeat_interleave(torch.arange(len(items)), counts),
        "tokens": torch.from_numpy(np.concatenate([it["tokens"] for it in items])),
        "pad": torch.from_numpy(np.concatenate([it["pad"] for it in items])),
        "label": torch.from_numpy(np.concatenate([it["label"] for it in items])),
        "is_mc": torch.from_numpy(np.concatenate([it["is_mc"] for it in items])),
    }


class OffsetBatchSampler(Sampler[list[tuple[int, int]]]):
    """A :class:`StepBatchSampler` whose items carry a random start offset, drawn per (epoch, question).

    The offsets of an epoch are one seeded draw over all questions, so they do not depend on world size,
    gradient accumulation or where a run was resumed.
    """

    def __init__(self, base: StepBatchSampler, num_starts: int, seed: int):
        self.base, self.num_starts, self.seed = base, num_starts, seed

    @property
    def steps_per_epoch(self) -> int:
        return self.base.steps_per_epoch

    def set_position(self, step: int) -> None:
        self.base.set_position(step)

    def epoch_offsets(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 7 * epoch + 1)
        return torch.randint(self.num_starts, (self.base.num_items,), generator=gen)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.base.start_step // self.base.steps_per_epoch
        offsets = self.epoch_offsets(epoch)
        for idx in self.base:
            yield [(i, int(offsets[i])) for i in idx]

    def __len__(self) -> int:
        return len(self.base)
