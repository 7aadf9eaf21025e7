"""Deterministic evaluation of the reasoner: fixed start offsets instead of the original's random one (Q7).

Every question is answered once per offset in ``offsets``. Reported:

* ``metrics`` -- the mean over offsets of each metric (the expectation of the original's random-offset
  number, without its noise), and ``metrics_std`` -- the spread over offsets;
* ``ensemble`` -- metrics of the answers from logits averaged over offsets (a single deterministic answer per
  question; these also go into the CLEVRER-format prediction file).

Distributed: each rank answers a strided share of the questions; counts are summed over ranks, and the
ensemble answers are gathered so that rank 0 can write the prediction file.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from cjepa.eval.vqa.data import VQADataset, collate_questions
from cjepa.eval.vqa.metrics import count_correct, metrics_from_counts
from cjepa.eval.vqa.questions import DESCRIPTIVE, QuestionSet


def _all_reduce(arr: np.ndarray, device: torch.device) -> np.ndarray:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)).to(device)
    torch.distributed.all_reduce(t)
    return t.cpu().numpy()


def _gather_rows(rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return rows, values
    parts: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, (rows, values))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _move(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate_reasoner(
    model: torch.nn.Module,
    dataset: VQADataset,
    offsets: list[int],
    *,
    batch_size: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
    autocast_dtype: Optional[torch.dtype] = None,
) -> dict:
    """Answer every question of ``dataset`` at every offset; see the module docstring for what is returned."""
    qs = dataset.qs
    if not offsets:
        raise ValueError("no evaluation offsets")
    bad = [o for o in offsets if not 0 <= o < dataset.num_starts]
    if bad:
        raise ValueError(f"evaluation offsets {bad} out of range 0..{dataset.num_starts - 1}")
    was_training = model.training
    model.eval()
    mine = np.arange(rank, len(qs), world_size)
    row_q_all = np.repeat(np.arange(len(qs)), qs.row_count)  # (R,) question of each row
    ans_sum = np.zeros((qs.num_rows, 0), np.float32)
    choice_sum = np.zeros(qs.num_rows, np.float32)
    per_offset = []
    bar = tqdm(total=len(offsets) * len(mine), desc="evaluate", disable=not progress, dynamic_ncols=True)
    for o in offsets:
        row_correct = np.zeros(qs.num_rows, bool)
        for b in range(0, len(mine), batch_size):
            chunk = mine[b : b + batch_size]
            batch = _move(collate_questions([dataset[(int(q), o)] for q in chunk]), device)
            ctx = torch.autocast(device.type,
                                 dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
            with ctx:
                out = model(batch["video"], batch["row_video"], batch["tokens"], batch["pad"], batch["is_mc"],
                            batch["slot_pad"])
            ans = out["answer_logits"].float().cpu().numpy()  # (N, A)
            ch = out["choice_logits"].float().cpu().numpy()  # (N,)
            rows = np.concatenate([np.arange(qs.row_start[q], qs.row_start[q] + qs.row_count[q]) for q in chunk])
            if ans_sum.shape[1] == 0:
                ans_sum = np.zeros((qs.num_rows, ans.shape[1]), np.float32)
            ans_sum[rows] += ans
            choice_sum[rows] += ch
            row_correct[rows] = _row_correct(ans, ch, qs.label[rows], batch["is_mc"].cpu().numpy())
            bar.update(len(chunk))
        keep = np.isin(row_q_all, mine)
        counts = count_correct(qs.qtype[mine], np.searchsorted(mine, row_q_all[keep]), row_correct[keep])
        per_offset.append(_all_reduce(counts, device))
    bar.close()
    # ensemble: answers from logits summed over offsets
    rows_mine = np.nonzero(np.isin(row_q_all, mine))[0]
    is_mc = qs.qtype[row_q_all[rows_mine]] != DESCRIPTIVE
    ens_pred = np.where(
        is_mc, (choice_sum[rows_mine] > 0).astype(np.int64), ans_sum[rows_mine].argmax(1) if ans_sum.shape[1] else 0
    )
    ens_correct = ens_pred == qs.label[rows_mine]
    ens_counts = _all_reduce(count_correct(qs.qtype[mine], np.searchsorted(mine, row_q_all[rows_mine]), ens_correct),
                             device)
    all_rows, all_pred = _gather_rows(rows_mine, ens_pred)
    prediction = np.full(qs.num_rows, -1, np.int64)
    prediction[all_rows] = all_pred
    if was_training:
        model.train()
    return summarise(per_offset, ens_counts, offsets, prediction)


def _row_correct(ans: np.ndarray, ch: np.ndarray, label: np.ndarray, is_mc: np.ndarray) -> np.ndarray:
    """Descriptive rows: argmax == label; choice rows: (logit > 0) == label (the original's threshold)."""
    return np.where(is_mc, (ch > 0).astype(np.int64) == label, ans.argmax(1) == label)


def summarise(per_offset: list[np.ndarray], ensemble_counts: np.ndarray, offsets: list[int],
              prediction: np.ndarray) -> dict:
    ms = [metrics_from_counts(c) for c in per_offset]
    keys = list(ms[0])
    mean = {k: float(np.mean([m[k] for m in ms])) for k in keys}
    std = {k: float(np.std([m[k] for m in ms])) if len(ms) > 1 else 0.0 for k in keys if not k.endswith("_questions")}
    return {
        "metrics": mean,
        "metrics_std": std,
        "ensemble": metrics_from_counts(ensemble_counts),
        "per_offset": {str(o): m for o, m in zip(offsets, ms)},
        "offsets": list(offsets),
        "prediction": prediction,  # (R,) ensemble answer per row: answer id or 1/0; not JSON (see write_outputs)
    }


def predictions_to_clevrer(qs: QuestionSet, prediction: np.ndarray, answer_names: list[str]) -> list[dict]:
    """Ensemble answers in CLEVRER's submission format (scenes in first-appearance order)."""
    scenes: dict[int, dict] = {}
    for q in range(len(qs)):
        s = int(qs.scene_index[q])
        scene = scenes.setdefault(s, {"scene_index": s, "video_filename": qs.video_filename[q], "questions": []})
        rows = qs.rows_of(q)
        if qs.qtype[q] == DESCRIPTIVE:
            p = int(prediction[rows.start])
            scene["questions"].append({"question_id": int(qs.question_id[q]),
                                       "answer": answer_names[p] if p >= 0 else ""})
        else:
            scene["questions"].append(
                {
                    "question_id": int(qs.question_id[q]),
                    "choices": [
                        {"choice_id": int(qs.choice_id[r]), "answer": "correct" if prediction[r] == 1 else "wrong"}
                        for r in range(rows.start, rows.stop)
                    ],
                }
            )
    return list(scenes.values())


def jsonable(result: dict) -> dict:
    """The evaluation result without the per-row prediction array; NaN -> None."""

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, float) and math.isnan(v):
            return None
        return v

    return clean({k: v for k, v in result.items() if k != "prediction"})


def write_outputs(
    result: dict, qs: QuestionSet, answer_names: list[str], out_dir: Path, tag: str, extra: Optional[dict] = None
) -> tuple[Path, Path]:
    """``<out_dir>/eval_<tag>.json`` (metrics) and ``<out_dir>/predictions_<tag>.json`` (CLEVRER format)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path, pred_path = out_dir / f"eval_{tag}.json", out_dir / f"predictions_{tag}.json"
    metrics_path.write_text(json.dumps({**jsonable(result), **(extra or {})}, indent=1))
    pred_path.write_text(json.dumps(predictions_to_clevrer(qs, result["prediction"], answer_names)))
    return metrics_path, pred_path
