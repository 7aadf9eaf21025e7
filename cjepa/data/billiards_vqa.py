"""A CLEVRER-schema VQA world on the built-in billiards dynamics (cjepa.data.synthetic), with true counterfactuals.

Each scene is simulated for ``total_frames`` frames; the slot store holds only the first ``observed_frames``
(as CLEVRER holds 128 of its 160 simulated frames), plus the per-frame ``object_ids`` (T, S) of every slot: the
instance id of the object it holds (object k -> k + 1, the ``mask_id`` of the annotation, as extraction writes
from instance masks; -1 = empty), which the counterfactual protocol needs. Objects have unique CLEVRER colour names (8
colours)
and are called "the <colour> object". Ground truth comes from the simulator, counterfactuals from re-running
the same initial state without the removed object (CLEVRER's own definition):

* descriptive: "How many collisions happen?" (pairs colliding in the observed frames, capped at 5),
  "Are there any <c> objects?" (yes/no), "What color is the object that collides with the <c> object?";
* explanatory: "Which of the following is responsible for the collision between the <a> object and the <b>
  object?" / "The presence of the <c> object" -- correct iff c is a causal ancestor of that collision (CLEVRER's
  definition: c collided with a or b before it, or with an object that then did, transitively);
* predictive: "Which event will happen next?" / "The <a> object collides with the <b> object" -- correct iff
  that pair collides after the observed frames;
* counterfactual: "Which of the following will happen if the <x> object is removed?" / "The <a> object collides
  with the <b> object" -- correct iff that pair collides in the observed span of the re-run without x.

Answers are decidable from the frames a question reads. A collision recorded at frame t changes the velocities
between frames t and t + 1, so it is visible in frames 0..observed-1 only if t < observed - 1: "observed"
collisions are those, "future" ones those with observed - 1 <= t < total - 1 (the last one whose effect the
simulated frames show). Explanatory answers follow the collisions seen, not a re-simulation: whether removing an
ancestor really prevents a collision depends on chaotic details of a re-simulation that the collisions seen do not
show (the two rules disagree on about 14 % of the choices: ``benchmarks/vqa_ceiling.py --observer``), which left
the question type at its prior.

Written: ``<root>/slots`` (slot store, splits as asked), ``<root>/questions/<split>.json`` (CLEVRER schema) and
``<root>/annotations.json`` (CLEVRER-style annotations: ``object_property``, ``collision``). With ``oracle=True``
also the world as a perfect world model would imagine it, for the reasoner's ceiling (``vqa.protocol=oracle``):
``<root>/oracle/slots`` (all ``total_frames`` true slots; the first ``observed_frames`` equal ``<root>/slots``)
and ``<root>/oracle/counterfactual`` (for every object x, key ``<video>|remove:<x>``: the simulator's re-run
without x over the observed frames, x's slot zero and marked absent in the extra ``present``). Everything is a
deterministic function of (seed, split, scene index).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cjepa.data.slot_store import SlotStoreWriter
from cjepa.data.synthetic import BilliardsVideo, SlotEmbedding, integrate_billiards, sample_initial_state

COLOUR_NAMES = ("gray", "red", "blue", "green", "brown", "yellow", "cyan", "purple")  # colour id -> CLEVRER word
SPLIT_BASE = {"train": 0, "val": 10000, "test": 15000}  # scene index offsets, as CLEVRER numbers its videos


def cf_key(video_key: str, object_id: int) -> str:
    """Key of the video without object ``object_id``: the format of the counterfactual stores the VQA harness
    reads (``cjepa.eval.vqa.rollouts.cf_key``; the data layer cannot import it)."""
    return f"{video_key}|remove:{int(object_id)}"


def collided_pairs(video: BilliardsVideo, lo: int, hi: int, ids: np.ndarray | None = None) -> set[tuple[int, int]]:
    """Object pairs (i < j, in ``ids`` numbering) with a collision recorded at a frame in [lo, hi)."""
    ids = np.arange(len(video.radii)) if ids is None else ids
    out = set()
    for t, i, j in video.collisions:
        if lo <= t < hi:
            a, b = int(ids[i]), int(ids[j])
            out.add((min(a, b), max(a, b)))
    return out


def causal_ancestors(video: BilliardsVideo, pair: tuple[int, int], hi: int) -> set[int]:
    """Objects other than the pair that reach it through collisions before its first collision in [0, hi):
    walking back in time, a collision with an object already in the set adds its partner."""
    events = sorted((t, min(i, j), max(i, j)) for t, i, j in video.collisions if t < hi)
    first = min(t for t, i, j in events if (i, j) == pair)
    reach = set(pair)
    for t, i, j in reversed(events):
        if t < first and (i in reach or j in reach):
            reach |= {i, j}
    return reach - set(pair)


@dataclass
class BilliardsScene:
    scene_index: int
    video_filename: str
    video: BilliardsVideo  # all total_frames
    slots: np.ndarray  # (observed, S, D) float32
    object_ids: np.ndarray  # (observed, S) int instance id (object k -> k + 1), -1 = empty slot
    factual: set  # pairs colliding in the observed frames (effect visible in them)
    future: set  # pairs colliding after them
    counterfactual: dict  # removed object -> pairs colliding in the observed frames without it
    slot_of: np.ndarray  # (N,) the slot holding object k
    reruns: dict  # removed object -> BilliardsVideo of the re-run without it (observed frames, objects in `keep` order)


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
    cf, reruns = {}, {}
    seen = observed_frames - 1  # collisions at frames < seen change velocities within the observed frames
    for x in range(num_objects):
        keep = np.array([k for k in range(num_objects) if k != x])
        reruns[x] = integrate_billiards(pos[keep], vel[keep], radii[keep], colours[keep], observed_frames, substeps)
        cf[x] = collided_pairs(reruns[x], 0, seen, keep)
    return BilliardsScene(
        scene_index,
        f"video_{scene_index:05d}.mp4",
        video,
        slots,
        object_ids,
        collided_pairs(video, 0, seen),
        collided_pairs(video, seen, total_frames - 1),
        cf,
        order[:num_objects],
        reruns,
    )


def oracle_videos(scene: BilliardsScene, embedding: SlotEmbedding, noise: float, rng: np.random.Generator):
    """(true slots of all simulated frames (T, S, D), {x: (re-run slots without x (T_obs, S, D), present (T_obs, S))}).

    Same slot order and noise level as the observed store; the observed frames are the stored ones, so the oracle
    differs from what the reasoner normally reads only where a world model would have to imagine."""
    obs = len(scene.slots)
    total = len(scene.video.positions)
    S, D = scene.slots.shape[1:]
    future = np.tile(embedding.empty, (total - obs, S, 1))
    future[:, scene.slot_of] = embedding(scene.video)[obs:]
    full = np.concatenate([scene.slots, future + rng.normal(0, noise, future.shape)]).astype(np.float32)
    out = {}
    for x, rerun in scene.reruns.items():
        keep = np.array([k for k in range(len(scene.slot_of)) if k != x])
        cf = np.tile(embedding.empty, (obs, S, 1))
        cf[:, scene.slot_of[keep]] = embedding(rerun)
        cf = cf + rng.normal(0, noise, cf.shape)
        cf[:, scene.slot_of[x]] = 0.0  # the removed slot: padding, as a counterfactual rollout writes it
        present = np.ones((obs, S), np.float32)
        present[:, scene.slot_of[x]] = 0.0
        out[x] = (cf.astype(np.float32), present)
    return full, out


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
        causes = causal_ancestors(scene.video, (a, b), len(scene.slots) - 1)
        choices = [
            {
                "choice_id": i,
                "choice": f"The presence of the {_name(scene, k)} object",
                "answer": "correct" if k in causes else "wrong",
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
    oracle: bool = False,
    progress=None,
) -> dict:
    """Generate the world into ``root`` (see the module docstring); returns counts per split and question type."""
    if max_objects > min(num_slots, len(COLOUR_NAMES)):
        raise ValueError(f"max_objects={max_objects} exceeds the slots ({num_slots}) or the colours "
                         f"({len(COLOUR_NAMES)})")
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
        producer = {"generator": "billiards_vqa", "seed": seed, "noise": noise}
        stores = {"slots": root / "slots",
                  **({"full": root / "oracle" / "slots", "cf": root / "oracle" / "counterfactual"} if oracle else {})}
        with contextlib.ExitStack() as stack:
            writers = {
                name: stack.enter_context(SlotStoreWriter(path, split, num_slots=num_slots, slot_dim=slot_dim,
                                                          producer=producer))
                for name, path in stores.items()
            }
            writer = writers["slots"]
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
                if oracle and scene.video_filename not in writers["full"]:
                    # its own noise stream: the observed world and its questions do not depend on `oracle`
                    full, cfs = oracle_videos(scene, emb, noise, np.random.default_rng([seed, split_id, i, 11]))
                    writers["full"].add(scene.video_filename, full)
                    for x, (cf, present) in cfs.items():
                        writers["cf"].add(cf_key(scene.video_filename, x), cf, present=present)
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
                            {"object_id": k, "color": _name(scene, k), "material": "rubber", "shape": "sphere",
                             "mask_id": k + 1}
                            for k in range(n)
                        ],
                        "collision": [{"object_ids": [int(a), int(b)], "frame_id": int(t)} for t, a,
                                      b in scene.video.collisions],
                    }
                )
                if progress is not None:
                    progress.update(1)
        (root / "questions" / f"{split}.json").write_text(json.dumps(scenes_json))
        summary[split] = {"videos": count, **types}
    (root / "annotations.json").write_text(json.dumps(annotations))
    return summary
