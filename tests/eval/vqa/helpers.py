"""Small builders shared by the VQA tests: question scenes in CLEVRER's schema and tiny slot stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cjepa.data.slot_store import SlotStoreWriter


def desc(qid: int, question: str, answer: str) -> dict:
    return {"question_id": qid, "question_type": "descriptive", "question": question, "answer": answer}


def mc(qid: int, qtype: str, question: str, answers: list[str], texts: list[str] | None = None) -> dict:
    texts = texts or [f"the choice number {i}" for i in range(len(answers))]
    return {"question_id": qid, "question_type": qtype, "question": question,
            "choices": [{"choice_id": i, "choice": t, "answer": a} for i, (t, a) in enumerate(zip(texts, answers))]}


def scene(index: int, questions: list[dict]) -> dict:
    return {"scene_index": index, "video_filename": f"video_{index:05d}.mp4", "questions": questions}


def write_json(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def write_store(root: Path, split: str, videos: dict[str, np.ndarray], **extras: dict[str, np.ndarray]) -> None:
    first = next(iter(videos.values()))
    with SlotStoreWriter(root, split, num_slots=first.shape[1], slot_dim=first.shape[2]) as w:
        for k, v in videos.items():
            w.add(k, v, **{name: e[k] for name, e in extras.items()})
