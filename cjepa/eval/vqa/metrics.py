"""CLEVRER VQA metrics exactly as the original scoring script defines them (section 6.4).

* descriptive: accuracy (predicted answer == ground truth).
* explanatory, predictive, counterfactual: per-option accuracy (fraction of choices answered right) and
  per-question accuracy (a question counts only if every one of its choices is right).
* overall: per-question accuracy pooled over all four types = (descriptive correct + multiple-choice questions
  fully correct) / all questions.

Everything is computed from counts (:data:`COUNT_FIELDS` per type), which add up over batches and ranks.
A type without questions gives NaN (the original printed 0.0). :func:`score_predictions` scores a prediction
file in CLEVRER's submission format against a question file; unlike the original script, which matched
questions by position and silently dropped mismatches ("invalid"), it matches by (scene_index, question_id)
and choice_id and counts a missing prediction as wrong (reported as ``missing``).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator, Optional

import numpy as np

from cjepa.eval.vqa.questions import QUESTION_TYPES, TYPE_ID

COUNT_FIELDS = ("questions", "questions_correct", "options", "options_correct")
MC_TYPES = QUESTION_TYPES[1:]


def empty_counts() -> np.ndarray:
    return np.zeros((len(QUESTION_TYPES), len(COUNT_FIELDS)), dtype=np.float64)


def count_correct(qtype: np.ndarray, row_question: np.ndarray, row_correct: np.ndarray) -> np.ndarray:
    """Counts (4 types x COUNT_FIELDS) from per-row correctness.

    qtype (Q,) type id per question; row_question (R,) the question (0..Q-1) each row belongs to;
    row_correct (R,) bool. Every question must have at least one row.
    """
    qtype = np.asarray(qtype)
    row_question = np.asarray(row_question)
    row_correct = np.asarray(row_correct, dtype=bool)
    Q = len(qtype)
    rows_per_q = np.bincount(row_question, minlength=Q)
    if (rows_per_q == 0).any():
        raise ValueError(f"question {int(np.argmin(rows_per_q))} has no rows")
    wrong_per_q = np.bincount(row_question, weights=(~row_correct).astype(np.float64), minlength=Q)
    q_correct = wrong_per_q == 0
    row_type = qtype[row_question]
    counts = empty_counts()
    for t in range(len(QUESTION_TYPES)):
        qm, rm = qtype == t, row_type == t
        counts[t] = (qm.sum(), (q_correct & qm).sum(), rm.sum(), (row_correct & rm).sum())
    return counts


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def metrics_from_counts(counts: np.ndarray) -> dict[str, float]:
    """Accuracies (fractions in [0, 1]) from counts; keys ``descriptive``, ``<type>_per_option``,
    ``<type>_per_question`` for the multiple-choice types, ``overall``, and ``<type>_questions``."""
    c = np.asarray(counts, dtype=np.float64)
    d = TYPE_ID["descriptive"]
    out = {"descriptive": _ratio(c[d, 1], c[d, 0])}
    for t in MC_TYPES:
        i = TYPE_ID[t]
        out[f"{t}_per_option"] = _ratio(c[i, 3], c[i, 2])
        out[f"{t}_per_question"] = _ratio(c[i, 1], c[i, 0])
    out["overall"] = _ratio(c[:, 1].sum(), c[:, 0].sum())
    for t in QUESTION_TYPES:
        out[f"{t}_questions"] = float(c[TYPE_ID[t], 0])
    return out


def headline(metrics: dict[str, float]) -> list[tuple[str, str]]:
    """(label, metric key) pairs in the order the paper's table uses."""
    return [
        ("overall (per question)", "overall"),
        ("counterfactual per option", "counterfactual_per_option"),
        ("counterfactual per question", "counterfactual_per_question"),
        ("explanatory per option", "explanatory_per_option"),
        ("explanatory per question", "explanatory_per_question"),
        ("predictive per option", "predictive_per_option"),
        ("predictive per question", "predictive_per_question"),
        ("descriptive", "descriptive"),
    ]


# --------------------------------------------------------------------------------------------- prediction files


def answer_pairs(question_scenes: Iterable[dict],
                 prediction_scenes: Iterable[dict]) -> Iterator[tuple[dict, list[tuple[Optional[str], str]]]]:
    """Each labelled question with its (predicted answer, true answer) pairs: one for a descriptive question (both
    as text), one per choice of a multiple-choice question. Predictions are matched by (scene_index, question_id)
    and choice_id; a missing one is None."""
    preds: dict[tuple[int, int], dict] = {}
    for scene in prediction_scenes:
        for q in scene.get("questions", []):
            preds[(int(scene["scene_index"]), int(q["question_id"]))] = q
    for scene in question_scenes:
        s = int(scene["scene_index"])
        for q in scene["questions"]:
            p = preds.get((s, int(q["question_id"])))
            if q["question_type"] == "descriptive":
                yield q, [(str(p["answer"]) if p is not None and "answer" in p else None, str(q["answer"]))]
                continue
            got = {int(c["choice_id"]): c.get("answer") for c in (p or {}).get("choices", [])}
            yield q, [(got.get(int(c["choice_id"])), c["answer"]) for c in q["choices"]]


def score_predictions(question_scenes: Iterable[dict], prediction_scenes: Iterable[dict]) -> dict[str, float]:
    """Score CLEVRER submission-format predictions against labelled questions (both lists of scenes).

    Predictions: ``[{"scene_index", "questions": [{"question_id", "answer"} | {"question_id",
    "choices": [{"choice_id", "answer": "correct"|"wrong"}]}]}]``. Returns :func:`metrics_from_counts` plus
    ``missing`` (questions or choices without a prediction, counted wrong).
    """
    counts = empty_counts()
    missing = 0
    for q, pairs in answer_pairs(question_scenes, prediction_scenes):
        missing += sum(pred is None for pred, _ in pairs)
        right = sum(pred is not None and pred == truth for pred, truth in pairs)
        counts[TYPE_ID[q["question_type"]]] += (1, right == len(pairs), len(pairs), right)
    out = metrics_from_counts(counts)
    out["missing"] = float(missing)
    return out
