"""A learnable question set generated from slot data, for the training and evaluation tests.

Every video has one colour (red, blue or green), written into every slot as +2 on one of three feature dims,
over unit-variance noise. Questions: "What color is the object?" (descriptive) and
"Which of the following is true?" with one choice per colour (multiple choice; the right colour is correct).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.eval.vqa.helpers import write_json, write_store

COLOURS = ("red", "blue", "green")


def make_colour_world(root: Path, splits: dict[str, int], *, frames: int = 12, slots: int = 3, dim: int = 6, seed: int = 0) -> dict:
    paths = {}
    for s_i, (split, n) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, s_i])
        videos, scenes = {}, []
        for i in range(n):
            idx = 1000 * s_i + i
            c = int(rng.integers(3))
            v = rng.normal(0, 1.0, (frames, slots, dim)).astype(np.float32)
            v[:, :, c] += 2.0
            videos[f"video_{idx:05d}.mp4"] = v
            scenes.append({"scene_index": idx, "video_filename": f"video_{idx:05d}.mp4", "questions": [
                {"question_id": 0, "question_type": "descriptive", "question": "What color is the object?", "answer": COLOURS[c]},
                {"question_id": 1, "question_type": "explanatory", "question": "Which of the following is true?",
                 "choices": [{"choice_id": k, "choice": f"The object is {name}", "answer": "correct" if k == c else "wrong"}
                             for k, name in enumerate(COLOURS)]},
            ]})
        write_store(root / "slots", split, videos)
        paths[split] = write_json(root / f"{split}.json", scenes)
    return paths


def colour_overrides(root: Path, paths: dict[str, str], *extra: str) -> list[str]:
    return [
        f"run.out_dir={root / 'runs'}", "run.name=vqa", "run.device=cpu", "run.seed=0",
        f"vqa.questions_train={paths['train']}", f"vqa.questions_val={paths['val']}", f"vqa.slots={root / 'slots'}",
        "vqa.video_len=12", "vqa.num_frames=3", "vqa.question_len=8", "vqa.choice_len=4",
        "vqa.word_dim=4", "vqa.heads=2", "vqa.depth=1", "vqa.ffn_dim=32", "vqa.head_hidden=16", "vqa.dropout=0.0",
        "vqa.lr=3e-3", "vqa.batch_size=16", "vqa.epochs=10", "vqa.eval_every_epochs=5", "vqa.val_batch_size=32",
        "train.log_every=3", "train.ckpt_every=1000", *extra,
    ]
