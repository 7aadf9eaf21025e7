"""A CLEVRER-schema VQA world on the built-in billiards dynamics (cjepa.data.synthetic), with true counterfactuals.

Each scene is simulated for ``total_frames`` frames; the slot store holds only the first ``observed_frames``
(as CLEVRER holds 128 of its 160 simulated frames), plus the per-frame ``object_ids`` (T, S) of every slot: the
instance id of the object it holds (object k -> k + 1, the ``mask_id`` of the annotation, as extraction writes
from instance masks; -1 = empty), which the counterfactual protocol needs. Objects have unique CLEVRER colour names (8 colours)
and are called "the <colour> object". Ground truth comes from the simulator, counterfactuals from re-running
the same initial state without the removed object (CLEVRER's own definition):

* descriptive: "How many collisions happen?" (pairs colliding in the observed frames, capped at 5),
  "Are there any <c> objects?" (yes/no), "What color is the object that collides with the <c> object?";
* explanatory: "Which of the following is responsible for the collision between the <a> object and the <b>
  object?" / "The presence of the <c> object" -- correct iff removing c prevents that collision;
* predictive: "Which event will happen next?" / "The <a> object collides with the <b> object" -- correct iff
  that pair collides after the observed frames;
* counterfactual: "Which of the following will happen if the <x> object is removed?" / "The <a> object collides
  with the <b> object" -- correct iff that pair collides in the observed span of the re-run without x.

Written: ``<root>/slots`` (slot store, splits as asked), ``<root>/questions/<split>.json`` (CLEVRER schema) and
``<root>/annotations.json`` (CLEVRER-style annotations: ``object_property``, ``collision``). Everything is a
deterministic function of (seed, split, scene index).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cjepa.data.slot_store import SlotStoreWriter
from cjepa.data.synthetic import BilliardsVideo, SlotEmbedding, integrate_billiards, sample_initial_state

COLOUR_NAMES = ("gray", "red", "blue", "green", "brown", "yellow", "cyan", "purple")  # colour id -> CLEVRER word
SPLIT_BASE = {"train": 0, "val": 10000, "test": 15000}  # scene index offsets, as CLEVRER numbers its videos


def collided_pairs(video: BilliardsVideo, lo: int, hi: int, ids: np.ndarray | None = None) -> set[tuple[int, int]]:
    """Object pairs (i < j, in ``ids`` numbering) that collide in frames [lo, hi)."""
    ids = np.arange(len(video.radii)) if ids is None else ids
    out = set()
    for t, i, j in video.collisions:
        if lo <= t < hi:
            a, b = int(ids[i]), int(ids[j])
            out.add((min(a, b), max(a, b)))
    return out


@dataclass
class BilliardsScene:
    scene_index: int
    video_filename: str
    video: BilliardsVideo  # all total_frames
    slots: np.ndarray  # (observed, S, D) float32
    object_ids: np.ndarray  # (observed, S) int instance id (object k -> k + 1), -1 = empty slot
    factual: set  # pairs colliding in the observed frames
    future: set  # pairs colliding after them
    counterfactual: dict  # removed object -> pairs colliding in the observed frames without it


def make_scene(
    scene_index: int,
    rng: np.random.Generator,
    embedding: SlotEmbedding,
    *,
    num_objects: int,
    num_slots: int,
    observed_frames: int,
    total_frames: int,
    noise: float,
    substeps: int = 8,
) -> BilliardsScene:
    pos, vel, radii, colours = sample_initial_state(num_objects, rng)
    video = integrate_billiards(pos, vel, radii, colours, total_frames, substeps)
    obj = embedding(video)[:observed_frames]  # (T, N, D)
    slots = np.tile(embedding.empty, (observed_frames, num_slots, 1))
    order = rng.permutation(num_slots)  # slot order[k] holds object k
    slots[:, order[:num_objects]] = obj
    slots = (slots + rng.normal(0, noise, slots.shape)).astype(np.float32)
    object_ids = np.full((observed_frames, num_slots), -1, np.int64)
    object_ids[:, order[:num_objects]] = np.arange(num_objects) + 1  # instance ids: object k -> k + 1 (0 = background)
    cf = {}
    for x in range(num_objects):
        keep = np.array([k for k in range(num_objects) if k != x])
        rerun = integrate_billiards(pos[keep], vel[keep], radii[keep], colours[keep], observed_frames, substeps)
        cf[x] = collided_pairs(rerun, 0, observed_frames, keep)
    return BilliardsScene(
        scene_index,
        f"video_{scene_index:05d}.mp4",
        video,
        slots,
        object_ids,
        collided_pairs(video, 0, observed_frames),
        collided_pairs(video, observed_frames, total_frames),
        cf,
    )


def _name(scene: BilliardsScene, k: int) -> str:
    return COLOUR_NAMES[int(scene.video.colours[k])]


def _event(scene: BilliardsScene, pair: tuple[int, int]) -> str:
    return f"The {_name(scene, pair[0])} object collides with the {_name(scene, pair[1])} object"


def scene_questions(scene: BilliardsScene, rng: np.random.Generator) -> list[dict]:
    """The questions of one scene (CLEVRER schema); answers from the simulator and its re-runs."""
    n = len(scene.video.radii)
    qs: list[dict] = []

    def add(q: dict) -> None:
        qs.append({"question_id": len(qs), **q})

    # descriptive
    add(
        {
            "question_type": "descriptive",
            "question_subtype": "count",
            "question": "How many collisions happen?",
            "answer": str(min(len(scene.factual), 5)),
        }
    )
    present = {int(c) for c in scene.video.colours}
    absent = [c for c in range(len(COLOUR_NAMES)) if c not in present]
    c = int(rng.choice(sorted(present))) if (rng.random() < 0.5 or not absent) else int(rng.choice(absent))
    add(
        {
            "question_type": "descriptive",
            "question_subtype": "exist",
            "question": f"Are there any {COLOUR_NAMES[c]} objects?",
            "answer": "yes" if c in present else "no",
        }
    )
    partners = {k: [p[0] if p[1] == k else p[1] for p in scene.factual if k in p] for k in range(n)}
    single = [k for k in range(n) if len(partners[k]) == 1]
    if single:
        k = int(rng.choice(single))
        add(
            {
                "question_type": "descriptive",
                "question_subtype": "query_color",
                "question": f"What color is the object that collides with the {_name(scene, k)} object?",
                "answer": _name(scene, partners[k][0]),
            }
        )
    all_pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    # explanatory
    if scene.factual:
        a, b = sorted(scene.factual)[int(rng.integers(len(scene.factual)))]
        others = [k for k in range(n) if k not in (a, b)]
        rng.shuffle(others)
        choices = [
            {
                "choice_id": i,
                "choice": f"The presence of the {_name(scene, k)} object",
                "answer": "correct" if (a, b) not in scene.counterfactual[k] else "wrong",
            }
            for i, k in enumerate(others[:4])
        ]
        if choices:
            add(
                {
                    "question_type": "explanatory",
                    "question": f"Which of the following is responsible for the collision between "
                    f"the {_name(scene, a)} object and the {_name(scene, b)} object?",
                    "choices": choices,
                }
            )
    # predictive
    happen = sorted(scene.future)
    not_happen = [p for p in all_pairs if p not in scene.future]
    picks = []
    if happen:
        picks.append(happen[int(rng.integers(len(happen)))])
    if not_happen:
        picks.append(not_happen[int(rng.integers(len(not_happen)))])
    rng.shuffle(picks)
    add(
        {
            "question_type": "predictive",
            "question": "Which event will happen next?",
            "choices": [
                {"choice_id": i, "choice": _event(scene, p), "answer": "correct" if p in scene.future else "wrong"}
                for i, p in enumerate(picks)
            ],
        }
    )
    # counterfactual: prefer removing objects that took part in a collision (their removal changes something)
    movers = sorted({k for p in scene.factual for k in p}) or list(range(n))
    for x in rng.permutation(movers)[:2]:
        x = int(x)
        cand = [p for p in all_pairs if x not in p]
        if not cand:
            continue
        cf = scene.counterfactual[x]
        # interesting choices first: collisions that only happen in one of the two worlds
        ranked = sorted(cand, key=lambda p: (-((p in cf) != (p in scene.factual)), -(p in cf), float(rng.random())))
        chosen = ranked[:4]
        rng.shuffle(chosen)
        add(
            {
                "question_type": "counterfactual",
                "question": f"Which of the following will happen if the {_name(scene, x)} object is removed?",
                "choices": [
                    {"choice_id": i, "choice": _event(scene, p), "answer": "correct" if p in cf else "wrong"}
                    for i, p in enumerate(chosen)
                ],
            }
        )
    return qs


def write_billiards_vqa(
    root: str | os.PathLike,
    splits: dict[str, int],
    *,
    num_slots: int = 7,
    slot_dim: int = 128,
    observed_frames: int = 128,
    total_frames: int = 160,
    min_objects: int = 3,
    max_objects: int = 6,
    noise: float = 0.02,
    seed: int = 0,
    substeps: int = 8,
    progress=None,
) -> dict:
    """Generate the world into ``root`` (see the module docstring); returns counts per split and question type."""
    if max_objects > min(num_slots, len(COLOUR_NAMES)):
        raise ValueError(f"max_objects={max_objects} exceeds the slots ({num_slots}) or the colours ({len(COLOUR_NAMES)})")
    if total_frames < observed_frames:
        raise ValueError("total_frames must be >= observed_frames")
    root = Path(root)
    (root / "questions").mkdir(parents=True, exist_ok=True)
    emb = SlotEmbedding(slot_dim)
    annotations, summary = [], {}
    for split, count in splits.items():
        split_id = sum(ord(ch) for ch in split)
        base = SPLIT_BASE.get(split, 20000 + 1000 * (split_id % 50))
        scenes_json = []
        types: dict[str, int] = {}
        with SlotStoreWriter(
            root / "slots",
            split,
            num_slots=num_slots,
            slot_dim=slot_dim,
            producer={"generator": "billiards_vqa", "seed": seed, "noise": noise},
        ) as writer:
            for i in range(count):
                rng = np.random.default_rng([seed, split_id, i, 7])
                n = int(rng.integers(min_objects, max_objects + 1))
                scene = make_scene(
                    base + i,
                    rng,
                    emb,
                    num_objects=n,
                    num_slots=num_slots,
                    observed_frames=observed_frames,
                    total_frames=total_frames,
                    noise=noise,
                    substeps=substeps,
                )
                if scene.video_filename not in writer:
                    writer.add(scene.video_filename, scene.slots, object_ids=scene.object_ids)
                questions = scene_questions(scene, rng)
                for q in questions:
                    types[q["question_type"]] = types.get(q["question_type"], 0) + 1
                scenes_json.append(
                    {"scene_index": scene.scene_index, "video_filename": scene.video_filename, "questions": questions}
                )
                annotations.append(
                    {
                        "scene_index": scene.scene_index,
                        "video_filename": scene.video_filename,
                        "object_property": [
                            {"object_id": k, "color": _name(scene, k), "material": "rubber", "shape": "sphere", "mask_id": k + 1}
                            for k in range(n)
                        ],
                        "collision": [{"object_ids": [int(a), int(b)], "frame_id": int(t)} for t, a, b in scene.video.collisions],
                    }
                )
                if progress is not None:
                    progress.update(1)
        (root / "questions" / f"{split}.json").write_text(json.dumps(scenes_json))
        summary[split] = {"videos": count, **types}
    (root / "annotations.json").write_text(json.dumps(annotations))
    return summary
