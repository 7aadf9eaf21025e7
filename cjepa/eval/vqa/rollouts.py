"""Slot videos for the reasoner: factual rollouts and counterfactual ("object removed") rollouts.

Factual (section 1.9): observed frames 0..obs-1 are copied and the C-JEPA predictor fills obs..target-1 with
``cjepa.eval.rollout.rollout_interleaved`` (frameskip interleaved chains). Written to a slot store, resumable.

Counterfactual, for a question "what happens if object X is removed": the predictor re-imagines the video
without X. Construction, per (video, X):

1. ``object_ids`` (T, S), the slot store's per-frame ground-truth instance id of every slot (-1 = none; the id
   in the instance masks, :func:`cjepa.eval.vqa.questions.instance_id`), gives X's first frame t_X and its
   slot s* = the slot holding X at t_X.
2. Slot s* is dropped from every frame (its tokens are removed, not zeroed: the predictor has no slot-index
   embedding, so it runs on S-1 slots exactly as on S).
3. Branch frame b = max(t_X, T_h * frameskip): before X appears the factual and counterfactual worlds agree,
   and the predictor needs a full history window. Frames 0..b-1 are the observed slots (without s*); frames
   b..cf_frames-1 are predicted by ``rollout_interleaved`` from that history.
4. The S-1 slots go back to their original indices; slot s* holds zeros, and the per-frame extra
   ``present`` (T, S) (1 kept, 0 removed) tells the reasoner to ignore it (key padding).

What this measures, and what it cannot: the counterfactual video is the world model's own imagination of the
scene without X. Objects that enter after frame b are not in the history, so the predictor cannot make them
enter; their slots keep whatever the predictor makes of their "empty" codes. Error compounds over the
cf_frames - b predicted frames (about 116 for CLEVRER).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from cjepa.config import ConfigError
from cjepa.data.slot_store import SlotSplit, SlotStoreError, SlotStoreWriter, open_split
from cjepa.eval.rollout import rollout_interleaved, rollout_split
from cjepa.eval.vqa.data import resolve_video_keys
from cjepa.eval.vqa.questions import (
    COUNTERFACTUAL,
    QuestionSet,
    build_question_set,
    iter_answers,
    iter_texts,
    load_object_tables,
    load_question_file,
    resolve_removed_objects,
)
from cjepa.eval.vqa.text import Vocab
from cjepa.models.predictor_checkpoints import predictor_from_checkpoint

# --------------------------------------------------------------------------------------------- predictor


def load_predictor(checkpoint: str, model_cfg, attention: str, device: torch.device) -> torch.nn.Module:
    """A C-JEPA predictor from one of our checkpoints / run dirs (its saved model section wins) or a plain
    original state_dict (then ``model_cfg`` must describe it, e.g. ``layout=reference``)."""
    if not checkpoint:
        raise ConfigError("a predictor checkpoint is required (vqa.predictor_checkpoint: checkpoint dir, run dir or "
                          "state_dict)")

    def slots_only(mcfg, where: str) -> None:
        if mcfg.kind != "slots":
            raise ConfigError(f"VQA rollouts need a slot predictor (model.kind=slots); {where} is "
                              f"model.kind={mcfg.kind}")

    return predictor_from_checkpoint(checkpoint, model_cfg, attention, device, check=slots_only,
                                     label=" (vqa.predictor_checkpoint)").model


# --------------------------------------------------------------------------------------------- factual


def write_factual_rollouts(
    predictor,
    videos: Mapping[str, np.ndarray],
    out: str | os.PathLike,
    split: str,
    *,
    obs_frames: int,
    target_frames: int,
    frameskip: int,
    batch_size: int,
    device: torch.device,
    producer: Optional[dict] = None,
    progress=None,
) -> int:
    """Roll every video of ``videos`` out to ``target_frames`` into store ``out``/``split``; returns how many were
    new."""
    first = np.asarray(videos[next(iter(videos))])
    writer = SlotStoreWriter(out, split, num_slots=first.shape[1], slot_dim=first.shape[2], producer=producer)
    todo = {k: videos[k] for k in videos if k not in writer}
    with writer, torch.no_grad():
        for key, arr in rollout_split(
            predictor,
            todo,
            obs_frames=obs_frames,
            target_frames=target_frames,
            frameskip=frameskip,
            batch_size=batch_size,
            device=device,
            progress=progress,
        ):
            writer.add(key, arr)
    return len(todo)


# --------------------------------------------------------------------------------------------- counterfactual


def cf_key(video_key: str, object_id: int) -> str:
    """Key of the counterfactual video of ``video_key`` without object ``object_id``."""
    return f"{video_key}|remove:{int(object_id)}"


@dataclass(frozen=True)
class CounterfactualRequest:
    video_key: str
    object_id: int
    slot: int  # slot index removed (the one holding the object when it first appears)
    branch_frame: int  # first predicted frame

    @property
    def key(self) -> str:
        return cf_key(self.video_key, self.object_id)


def object_ids_reader(videos: Mapping[str, np.ndarray], source: str = "slots") -> Callable[[str], np.ndarray]:
    """key -> (T, S) int object ids from a store's ``object_ids`` extra (clear error when it is absent)."""
    if not isinstance(videos, SlotSplit):
        raise SlotStoreError(
            f"{source}: the counterfactual protocol needs per-slot object ids (the slot store extra 'object_ids', "
            "written at slot extraction); an original slot pickle has none"
        )

    def read(key: str) -> np.ndarray:
        try:
            ids = np.asarray(videos.extra(key, "object_ids"))
        except SlotStoreError as err:
            raise SlotStoreError(
                f"{err}; the counterfactual protocol needs the per-slot object ids written at extraction"
            ) from err
        return np.rint(ids).astype(np.int64)

    return read


def plan_counterfactuals(
    qs: QuestionSet, video_keys: list[Optional[str]], object_ids_of: Callable[[str], np.ndarray], min_branch: int
) -> tuple[list[CounterfactualRequest], dict[str, int]]:
    """One request per distinct (video, removed object) of the counterfactual questions; stats of the rest."""
    reqs: dict[tuple[str, int], CounterfactualRequest] = {}
    stats = {
        "questions": 0,
        "planned": 0,
        "removed object unresolved": 0,
        "no slots for the video": 0,
        "object never bound to a slot": 0,
    }
    for q in np.nonzero(qs.qtype == COUNTERFACTUAL)[0]:
        stats["questions"] += 1
        obj, inst, key = int(qs.removed_object[q]), int(qs.removed_instance[q]), video_keys[q]
        if obj < 0:
            stats["removed object unresolved"] += 1
            continue
        if key is None:
            stats["no slots for the video"] += 1
            continue
        if (key, obj) in reqs:
            stats["planned"] += 1
            continue
        ids = object_ids_of(key)  # (T, S) instance ids (mask ids) of the slots
        hits = np.argwhere(ids == inst)
        if len(hits) == 0:
            stats["object never bound to a slot"] += 1
            continue
        t_first = int(hits[:, 0].min())
        slot = int(np.nonzero(ids[t_first] == inst)[0][0])
        reqs[(key, obj)] = CounterfactualRequest(key, obj, slot, max(t_first, min_branch))
        stats["planned"] += 1
    return sorted(reqs.values(), key=lambda r: (r.branch_frame, r.video_key, r.object_id)), stats


def drop_slot(slots: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """(B, T, S, D), (B,) slot index -> (B, T, S-1, D) without that slot (order of the others kept)."""
    B, T, S, D = slots.shape
    keep = torch.ones(B, S, dtype=torch.bool, device=slots.device)
    keep[torch.arange(B, device=slots.device), removed] = False
    return slots[keep[:, None, :].expand(B, T, S)].view(B, T, S - 1, D)


def restore_slot(kept: torch.Tensor, removed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, S-1, D) -> ((B, T, S, D) with zeros at the removed index, present (B, T, S) float 1/0)."""
    B, T, S1, D = kept.shape
    S = S1 + 1
    present = torch.ones(B, S, dtype=torch.bool, device=kept.device)
    present[torch.arange(B, device=kept.device), removed] = False
    out = kept.new_zeros(B, T, S, D)
    out[present[:, None, :].expand(B, T, S)] = kept.reshape(-1, D)
    return out, present[:, None, :].expand(B, T, S).to(kept.dtype)


@torch.no_grad()
def counterfactual_rollout(
    predictor, slots: torch.Tensor, removed: torch.Tensor, branch_frame: int, out_frames: int, frameskip: int
):
    """Slots (B, >=branch, S, D) of B videos sharing a branch frame -> counterfactual (B, out_frames, S, D), present."""
    kept = drop_slot(slots[:, : min(branch_frame, out_frames)], removed)  # (B, b, S-1, D)
    if branch_frame < out_frames:
        kept = rollout_interleaved(predictor, kept, out_frames, frameskip)  # (B, out_frames, S-1, D)
    return restore_slot(kept, removed)


def build_counterfactual_store(
    predictor,
    videos: Mapping[str, np.ndarray],
    requests: list[CounterfactualRequest],
    out: str | os.PathLike,
    split: str,
    *,
    cf_frames: int,
    frameskip: int,
    batch_size: int,
    device: torch.device,
    producer: Optional[dict] = None,
    stats: Optional[dict] = None,
    progress=None,
) -> int:
    """Write the counterfactual video of every request to store ``out``/``split`` (resumable); returns how many
    were new. ``<out>/<split>/counterfactuals.json`` lists the requests and the planning stats."""
    first = np.asarray(videos[requests[0].video_key]) if requests else None
    if first is None:
        Path(out, split).mkdir(parents=True, exist_ok=True)
        _write_sidecar(Path(out) / split, requests, stats)
        return 0
    writer = SlotStoreWriter(out, split, num_slots=first.shape[1], slot_dim=first.shape[2], producer=producer)
    todo = [r for r in requests if r.key not in writer]
    with writer:
        i = 0
        while i < len(todo):  # batches of requests with the same branch frame (requests are sorted by it)
            b = todo[i].branch_frame
            group = [r for r in todo[i : i + batch_size] if r.branch_frame == b]
            need = min(b, cf_frames)
            arrs = []
            for r in group:
                v = np.asarray(videos[r.video_key][:need], dtype=np.float32)
                if len(v) < need:
                    raise SlotStoreError(f"video {r.video_key!r} has {len(v)} frames; its counterfactual branches at "
                                         f"frame {b}")
                arrs.append(v)
            slots = torch.from_numpy(np.stack(arrs)).to(device)
            removed = torch.tensor([r.slot for r in group], device=device)
            cf, present = counterfactual_rollout(predictor, slots, removed, b, cf_frames, frameskip)
            cf, present = cf.float().cpu().numpy(), present.float().cpu().numpy()
            for r, c, p in zip(group, cf, present):
                writer.add(r.key, c, present=p)
            i += len(group)
            if progress is not None:
                progress.update(len(group))
    _write_sidecar(Path(out) / split, requests, stats)
    return len(todo)


def _write_sidecar(split_dir: Path, requests: list[CounterfactualRequest], stats: Optional[dict]) -> None:
    doc = {"requests": [asdict(r) for r in requests], "stats": stats or {}}
    tmp = split_dir / f"counterfactuals.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, split_dir / "counterfactuals.json")


def counterfactuals_for_split(
    predictor,
    *,
    source: str,
    path: str,
    split: str,
    questions: str,
    annotations: str,
    out: str | os.PathLike,
    cf_frames: int,
    frameskip: int,
    batch_size: int,
    device: torch.device,
    producer: Optional[dict] = None,
    progress: bool = False,
) -> dict:
    """Plan and write the counterfactual videos of one split's counterfactual questions; returns the stats.

    ``source``/``path``/``split``: the observed slot videos with their ``object_ids`` extra; ``questions``: the
    split's question file; ``annotations``: object tables naming the removed objects.
    """
    from tqdm import tqdm

    scenes = load_question_file(questions)
    vocab = Vocab.build(iter_texts(scenes), iter_answers(scenes))  # only to lay the questions out; not saved
    qs = build_question_set(scenes, vocab, 64, 64, source=questions)
    videos = open_split(source, path, split)
    keys = resolve_video_keys(qs, set(videos.keys()))
    resolution = resolve_removed_objects(qs, load_object_tables(annotations, split))
    reqs, stats = plan_counterfactuals(
        qs, keys, object_ids_reader(videos, f"{path} ({split})"), min_branch=predictor.history_frames * frameskip
    )
    stats = {**stats, "resolution": resolution}
    bar = tqdm(total=len(reqs), desc=f"counterfactual {split}", disable=not progress, file=sys.stderr)
    stats["videos_new"] = build_counterfactual_store(
        predictor,
        videos,
        reqs,
        out,
        split,
        cf_frames=cf_frames,
        frameskip=frameskip,
        batch_size=batch_size,
        device=device,
        producer=producer,
        stats=stats,
        progress=bar,
    )
    bar.close()
    stats["videos"] = len(reqs)
    return stats
