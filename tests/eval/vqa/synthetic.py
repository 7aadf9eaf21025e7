"""Learnable question sets generated from slot data, for the training and evaluation tests.

Every video has one colour (red, blue or green), written into every slot as +2 on one of three feature dims,
over unit-variance noise. Questions: "What color is the object?" (descriptive) and
"Which of the following is true?" with one choice per colour (multiple choice; the right colour is correct).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.eval.vqa.helpers import write_json, write_store

COLOURS = ("red", "blue", "green")


def make_colour_world(root: Path, splits: dict[str, int], *, frames: int = 12, slots: int = 3, dim: int = 6,
                      seed: int = 0) -> dict:
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
                {"question_id": 0, "question_type": "descriptive", "question": "What color is the object?",
                 "answer": COLOURS[c]},
                {"question_id": 1, "question_type": "explanatory", "question": "Which of the following is true?",
                 "choices": [{"choice_id": k, "choice": f"The object is {name}",
                              "answer": "correct" if k == c else "wrong"}
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


def make_oracle_world(root: Path, splits: dict[str, int], *, observed: int = 12, total: int = 24, dim: int = 6,
                      seed: int = 0) -> dict:
    """A question set whose answers sit exactly where the oracle protocol puts information, and nowhere else.

    Three objects (red, blue, green), one slot each. The observed frames carry one colour signal (+2 on a feature
    dim), the simulated future (frames >= ``observed``, only in the oracle store) another, and the re-run without
    the removed object a third: "Which event will happen next?" is answered by the future's colour,
    "Which of the following will happen if the <c> object is removed?" by the re-run's. Choices: one per colour.
    A reasoner reading the observed frames instead of the future or the re-run sits at the prior (2/3 per option).
    Writes ``oracle/slots``, ``oracle/counterfactual`` (key ``<video>|remove:<object id>``, extra ``present``),
    ``annotations.json`` and one question file per split; returns their paths.
    """
    tables, out = {}, {}
    full_store, cf_store = root / "oracle" / "slots", root / "oracle" / "counterfactual"
    for s_i, (split, n) in enumerate(splits.items()):
        rng = np.random.default_rng([seed, s_i, 11])
        videos, cfs, present, scenes = {}, {}, {}, []
        for i in range(n):
            idx = 1000 * s_i + i
            key = f"video_{idx:05d}.mp4"
            now, future, rerun, removed = (int(x) for x in rng.integers(3, size=4))
            v = rng.normal(0, 1.0, (total, 3, dim)).astype(np.float32)
            v[:observed, :, now] += 2.0
            v[observed:, :, future] += 2.0
            cf = rng.normal(0, 1.0, (observed, 3, dim)).astype(np.float32)
            cf[:, :, rerun] += 2.0
            cf[:, removed] = 0.0
            p = np.ones((observed, 3), np.float32)
            p[:, removed] = 0.0
            videos[key], cfs[f"{key}|remove:{removed}"], present[f"{key}|remove:{removed}"] = v, cf, p
            tables[str(idx)] = [{"object_id": k, "color": c, "material": "rubber", "shape": "sphere",
                                 "mask_id": k + 1} for k, c in enumerate(COLOURS)]

            def choices(right: int) -> list[dict]:
                return [{"choice_id": k, "choice": f"The object is {c}",
                         "answer": "correct" if k == right else "wrong"} for k, c in enumerate(COLOURS)]

            scenes.append({"scene_index": idx, "video_filename": key, "questions": [
                {"question_id": 0, "question_type": "predictive", "question": "Which event will happen next?",
                 "choices": choices(future)},
                {"question_id": 1, "question_type": "counterfactual", "choices": choices(rerun),
                 "question": f"Which of the following will happen if the {COLOURS[removed]} object is removed?"},
            ]})
        write_store(full_store, split, videos)
        write_store(cf_store, split, cfs, present=present)
        out[split] = write_json(root / f"{split}.json", scenes)
    out["annotations"] = write_json(root / "annotations.json", tables)
    out["slots"], out["cf_slots"] = str(full_store), str(cf_store)
    return out
