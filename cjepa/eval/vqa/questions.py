"""CLEVRER-schema questions: loading, checking, tokenising into flat arrays, and naming removed objects.

Question files follow CLEVRER's ``{train,validation,test}.json``: a list of scenes
``{"scene_index": int, "video_filename": str, "questions": [...]}``; a question has ``question_id``,
``question_type`` (descriptive | explanatory | predictive | counterfactual), ``question``, optionally
``question_subtype`` and ``program``; descriptive questions carry ``answer``, the others ``choices``
(``choice_id``, ``choice``, ``answer`` = "correct" | "wrong"). Test files without answers load with
``labelled=False``. A video-shard split (``cjepa data world|clevrer``) serves as a question file too: its
samples' ``KEY.questions.json`` are the scenes, and their ``KEY.json`` annotations the object tables.

Every question becomes one row (descriptive: the question padded to question_len + choice_len) or one row
per choice (question padded to question_len, then the choice padded to choice_len), as in section 6.1. The
rows of all questions live in flat arrays (:class:`QuestionSet`), so a batch is a few fancy-indexing calls.

Counterfactual questions name the object they remove ("... if the cyan cylinder is removed?",
"Without the gray object, ..."). :func:`removed_object_phrase` extracts the attribute words and
:func:`resolve_object` finds the one object of the scene's object table (CLEVRER annotation
``object_property``: ``object_id``, ``color``, ``material``, ``shape``) that has all of them.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from cjepa.data.shards import open_split as open_shards
from cjepa.eval.vqa.text import CLEVRER_COLORS, CLEVRER_MATERIALS, CLEVRER_SHAPES, Vocab

QUESTION_TYPES = ("descriptive", "explanatory", "predictive", "counterfactual")
TYPE_ID = {t: i for i, t in enumerate(QUESTION_TYPES)}
DESCRIPTIVE, EXPLANATORY, PREDICTIVE, COUNTERFACTUAL = range(4)


class QuestionError(ValueError):
    """A question file is missing or does not follow CLEVRER's schema; the message names file, scene and question."""


# --------------------------------------------------------------------------------------------- loading


def shard_files(path: Path) -> Optional[list[Path]]:
    """The tar shards of a video-shard split (a directory with manifest.json, or one .tar), else None."""
    if (path.is_dir() and (path / "manifest.json").is_file()) or (path.is_file() and path.suffix == ".tar"):
        return [s.path for s in open_shards(path).shards]
    return None


def read_shard_json(path: str | os.PathLike, component: str) -> Iterable[tuple[str, object]]:
    """(key, parsed JSON) of one component ("questions.json", "json") of every sample of a shard split, in
    shard order. Only the JSON members are read; the videos are skipped over."""
    files = shard_files(Path(path))
    if files is None:
        raise QuestionError(f"{path} is not a video-shard split (no manifest.json) or a .tar shard")
    for f in files:
        with tarfile.open(f, "r:") as tf:
            for m in tf:
                key, _, ext = m.name.rsplit("/", 1)[-1].partition(".")
                if m.isreg() and ext == component:
                    try:
                        yield key, json.loads(tf.extractfile(m).read())
                    except (UnicodeDecodeError, json.JSONDecodeError) as err:
                        raise QuestionError(f"{f}: {m.name} is not valid JSON: {err}") from err


def load_question_file(path: str | os.PathLike) -> list[dict]:
    """Scenes of a CLEVRER question file, or of every KEY.questions.json of a video-shard split (sorted by scene)."""
    p = Path(path)
    if shard_files(p) is not None:
        scenes = [q for _, q in read_shard_json(p, "questions.json")]
        if not scenes:
            raise QuestionError(f"{p}: no sample of the shard split carries questions (KEY.questions.json)")
        return sorted(scenes, key=lambda sc: int(sc.get("scene_index", 0)))
    if not p.is_file():
        raise QuestionError(f"question file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise QuestionError(f"{p} is not valid JSON: {err}") from err
    if not isinstance(data, list):
        raise QuestionError(f"{p}: expected a list of scenes (CLEVRER schema), got {type(data).__name__}")
    return data


def _check_scene(scene, where: str) -> None:
    if not isinstance(scene, dict):
        raise QuestionError(f"{where}: a scene must be an object, got {type(scene).__name__}")
    for k in ("scene_index", "video_filename", "questions"):
        if k not in scene:
            raise QuestionError(f"{where}: scene has no {k!r} (keys: {sorted(scene)})")
    if not isinstance(scene["questions"], list):
        raise QuestionError(f"{where}: 'questions' must be a list")


def _check_question(q, where: str, labelled: bool) -> None:
    if not isinstance(q, dict):
        raise QuestionError(f"{where}: a question must be an object")
    for k in ("question_id", "question_type", "question"):
        if k not in q:
            raise QuestionError(f"{where}: question has no {k!r} (keys: {sorted(q)})")
    qt = q["question_type"]
    if qt not in TYPE_ID:
        raise QuestionError(f"{where}: question_type {qt!r} is not one of {QUESTION_TYPES}")
    if qt == "descriptive":
        if labelled and "answer" not in q:
            raise QuestionError(f"{where}: descriptive question without 'answer' (pass labelled=False for test files)")
        return
    choices = q.get("choices")
    if not isinstance(choices, list) or not choices:
        raise QuestionError(f"{where}: {qt} question needs a non-empty 'choices' list")
    for c in choices:
        if not isinstance(c, dict) or "choice_id" not in c or "choice" not in c:
            raise QuestionError(f"{where}: every choice needs 'choice_id' and 'choice', got {c!r}")
        if labelled and c.get("answer") not in ("correct", "wrong"):
            raise QuestionError(f"{where}: choice {c.get('choice_id')} answer {c.get('answer')!r} is not 'correct' or "
                                "'wrong'")


def has_answers(scenes: list[dict]) -> bool:
    """Whether a question file carries answers (train/validation) or not (CLEVRER's test file)."""
    for s in scenes:
        for q in s.get("questions", []):
            if q.get("question_type") == "descriptive":
                return "answer" in q
            return all("answer" in c for c in q.get("choices", [{}]))
    return False


def iter_texts(scenes: Iterable[dict]) -> Iterable[str]:
    """Every question and choice text (what the question vocabulary is built from)."""
    for s in scenes:
        for q in s["questions"]:
            yield q["question"]
            for c in q.get("choices", ()):
                yield c["choice"]


def iter_answers(scenes: Iterable[dict]) -> Iterable[str]:
    for s in scenes:
        for q in s["questions"]:
            if q["question_type"] == "descriptive" and "answer" in q:
                yield str(q["answer"])


# --------------------------------------------------------------------------------------------- flat arrays


@dataclass
class QuestionSet:
    """All questions of one split as flat arrays. Row r belongs to question ``row_question[r]``."""

    scene_index: np.ndarray  # (Q,) int64
    video_filename: list[str]  # (Q,)
    question_id: np.ndarray  # (Q,) int64
    qtype: np.ndarray  # (Q,) int64, 0..3 (QUESTION_TYPES)
    text: list[str]  # (Q,) raw question
    row_start: np.ndarray  # (Q,) int64
    row_count: np.ndarray  # (Q,) int64 (1 for descriptive)
    tokens: np.ndarray  # (R, question_len + choice_len) int64
    pad: np.ndarray  # (R, question_len + choice_len) bool, True = padding
    label: np.ndarray  # (R,) int64: answer id (descriptive) or 1/0 correct/wrong (choice); -1 if unlabelled
    choice_id: np.ndarray  # (R,) int64 (-1 for descriptive)
    labelled: bool = True
    truncated: int = 0  # texts longer than their padded length (cut)
    source: str = ""
    removed_object: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (Q,) object id or -1
    # (Q,) the removed object's instance id in masks and in the slot store's `object_ids` (see instance_id), or -1
    removed_instance: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.qtype)

    @property
    def num_rows(self) -> int:
        return len(self.label)

    def rows_of(self, q: int) -> slice:
        return slice(int(self.row_start[q]), int(self.row_start[q] + self.row_count[q]))

    def subset(self, keep: np.ndarray) -> "QuestionSet":
        """The questions at indices ``keep`` (their rows renumbered)."""
        keep = np.asarray(keep, dtype=np.int64)
        rows = (
            np.concatenate([np.arange(self.row_start[q], self.row_start[q] + self.row_count[q]) for q in keep])
            if len(keep)
            else np.zeros(0, np.int64)
        )
        counts = self.row_count[keep]
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(keep) else np.zeros(0, np.int64)
        return QuestionSet(
            scene_index=self.scene_index[keep],
            video_filename=[self.video_filename[q] for q in keep],
            question_id=self.question_id[keep],
            qtype=self.qtype[keep],
            text=[self.text[q] for q in keep],
            row_start=starts,
            row_count=counts,
            tokens=self.tokens[rows],
            pad=self.pad[rows],
            label=self.label[rows],
            choice_id=self.choice_id[rows],
            labelled=self.labelled,
            truncated=self.truncated,
            source=self.source,
            removed_object=self.removed_object[keep] if len(self.removed_object) else np.full(len(keep), -1, np.int64),
            removed_instance=self.removed_instance[keep] if len(self.removed_instance) else np.full(len(keep), -1,
                                                                                                    np.int64),
        )

    def counts_by_type(self) -> dict[str, int]:
        return {t: int((self.qtype == i).sum()) for i, t in enumerate(QUESTION_TYPES)}


def build_question_set(
    scenes: list[dict], vocab: Vocab, question_len: int, choice_len: int, *, labelled: bool = True,
    source: str = "questions"
) -> QuestionSet:
    """Tokenise every question of ``scenes`` (checked against CLEVRER's schema) into a :class:`QuestionSet`."""
    L = question_len + choice_len
    scene_idx, vfn, qid, qtype, texts, starts, counts = [], [], [], [], [], [], []
    toks, pads, labels, cids = [], [], [], []
    truncated = 0
    for si, scene in enumerate(scenes):
        _check_scene(scene, f"{source}: scene #{si}")
        for qi, q in enumerate(scene["questions"]):
            where = f"{source}: scene {scene['scene_index']} question {q.get('question_id', f'#{qi}')}"
            _check_question(q, where, labelled)
            t = TYPE_ID[q["question_type"]]
            scene_idx.append(int(scene["scene_index"]))
            vfn.append(str(scene["video_filename"]))
            qid.append(int(q["question_id"]))
            qtype.append(t)
            texts.append(q["question"])
            starts.append(len(labels))
            if t == DESCRIPTIVE:
                ids, pad, cut = vocab.encode(q["question"], L, where)
                truncated += cut
                toks.append(ids)
                pads.append(pad)
                labels.append(vocab.answer_id(q["answer"], where) if labelled else -1)
                cids.append(-1)
                counts.append(1)
                continue
            q_ids, q_pad, cut = vocab.encode(q["question"], question_len, where)
            truncated += cut
            for c in q["choices"]:
                c_ids, c_pad, cut = vocab.encode(c["choice"], choice_len, f"{where} choice {c['choice_id']}")
                truncated += cut
                toks.append(np.concatenate([q_ids, c_ids]))
                pads.append(np.concatenate([q_pad, c_pad]))
                labels.append(int(c["answer"] == "correct") if labelled else -1)
                cids.append(int(c["choice_id"]))
            counts.append(len(q["choices"]))
    if not qtype:
        raise QuestionError(f"{source}: no questions")
    n = len(qtype)
    return QuestionSet(
        scene_index=np.asarray(scene_idx, np.int64),
        video_filename=vfn,
        question_id=np.asarray(qid, np.int64),
        qtype=np.asarray(qtype, np.int64),
        text=texts,
        row_start=np.asarray(starts, np.int64),
        row_count=np.asarray(counts, np.int64),
        tokens=np.stack(toks),
        pad=np.stack(pads),
        label=np.asarray(labels, np.int64),
        choice_id=np.asarray(cids, np.int64),
        labelled=labelled,
        truncated=truncated,
        source=source,
        removed_object=np.full(n, -1, np.int64), removed_instance=np.full(n, -1, np.int64),
    )


# --------------------------------------------------------------------------------------------- removed objects

_ATTRIBUTES = {
    **{c: "color" for c in CLEVRER_COLORS},
    **{m: "material" for m in CLEVRER_MATERIALS},
    **{s: "shape" for s in CLEVRER_SHAPES},
}
# CLEVRER's counterfactual templates: "... if the <attrs> <noun> is removed?" and "Without the <attrs> <noun>, ...".
_REMOVED_PATTERNS = (
    re.compile(r"\bif the ((?:[a-z]+ )*?[a-z]+) (?:is|were|was) removed\b"),
    re.compile(r"\bwithout the ((?:[a-z]+ )*?[a-z]+?)(?=,|\?|$| what\b| which\b| will\b| how\b)"),
)


def removed_object_phrase(question: str) -> Optional[list[str]]:
    """Attribute words of the object a counterfactual question removes, e.g. ['cyan', 'cylinder']; None if none."""
    text = question.lower().strip()
    for pat in _REMOVED_PATTERNS:
        m = pat.search(text)
        if m:
            return m.group(1).split()
    return None


def instance_id(obj: dict) -> int:
    """An object's id in instance masks, hence in the slot store's per-slot ``object_ids`` (which extraction takes
    from the masks): ``mask_id`` where the table gives it (the built-in world), else ``object_id + 1`` -- the
    project's mask convention (0 = background), also used when CLEVRER's proposal masks are ingested."""
    return int(obj["mask_id"]) if "mask_id" in obj else int(obj["object_id"]) + 1


def resolve_object(words: list[str], objects: list[dict]) -> tuple[Optional[int], str]:
    """(object_id, "") of the unique object with every attribute in ``words``, or (None, reason category).

    Nouns "object"/"objects" match any shape; any other word that is not a CLEVRER attribute makes the phrase
    unresolvable (reported, never guessed).
    """
    wanted: dict[str, str] = {}
    for w in words:
        if w in ("object", "objects", "thing"):
            continue
        key = _ATTRIBUTES.get(w)
        if key is None:
            return None, "phrase has a word that is not a colour, material or shape"
        if key in wanted and wanted[key] != w:
            return None, "phrase names two values of one attribute"
        wanted[key] = w
    if not wanted:
        return None, "phrase names no attribute"
    hits = [o for o in objects if all(str(o.get(k, "")).lower() == v for k, v in wanted.items())]
    if not hits:
        return None, "no object of the scene matches the phrase"
    if len(hits) > 1:
        return None, "several objects of the scene match the phrase"
    try:
        return int(hits[0]["object_id"]), ""
    except (KeyError, TypeError, ValueError):
        return None, "matching object has no integer object_id"


def load_object_tables(path: str | os.PathLike, split: Optional[str] = None) -> dict[int, list[dict]]:
    """{scene_index: [{object_id, color, material, shape}, ...]} from CLEVRER annotations.

    ``path`` is a video-shard split (the annotation is each sample's KEY.json), a directory searched recursively
    for CLEVRER annotation files (``annotation_XXXXX.json``, each with ``scene_index`` and ``object_property``),
    or one JSON file holding either a list of such annotations or a mapping ``{scene_index or video_filename:
    [objects]}``. A shard root holding ``<split>/manifest.json`` reads that split (shard splits may number their
    scenes from 0 each, so their tables must not be mixed).
    """
    p = Path(path)
    if split is not None and (p / split / "manifest.json").is_file():
        p = p / split
    if not p.exists():
        raise QuestionError(f"annotations not found: {p}")
    tables: dict[int, list[dict]] = {}

    def add_annotation(ann: dict, where: str) -> None:
        if "object_property" not in ann or "scene_index" not in ann:
            raise QuestionError(f"{where}: an annotation needs 'scene_index' and 'object_property'")
        tables[int(ann["scene_index"])] = list(ann["object_property"])

    if shard_files(p) is not None:
        for key, meta in read_shard_json(p, "json"):
            add_annotation(meta, f"{p} sample {key}")
        return tables

    if p.is_dir():
        files = sorted(p.rglob("*.json"))
        if not files:
            raise QuestionError(f"annotation directory {p} holds no .json files")
        for f in files:
            add_annotation(json.loads(f.read_text()), str(f))
        return tables
    data = json.loads(p.read_text())
    if isinstance(data, list):
        for i, ann in enumerate(data):
            add_annotation(ann, f"{p}[{i}]")
    elif isinstance(data, dict):
        for key, objs in data.items():
            digits = re.findall(r"\d+", str(key))
            if not digits:
                raise QuestionError(f"{p}: key {key!r} names no scene index")
            tables[int(digits[-1] if not str(key).isdigit() else key)] = list(objs)
    else:
        raise QuestionError(f"{p}: expected a list of annotations or a mapping of object tables")
    return tables


def resolve_removed_objects(qs: QuestionSet, tables: dict[int, list[dict]]) -> dict[str, int]:
    """Fill ``qs.removed_object`` (object id) and ``qs.removed_instance`` (its instance id, see :func:`instance_id`)
    for counterfactual questions; returns {"resolved": n, <failure reason>: n, ...}."""
    stats: dict[str, int] = {"resolved": 0}
    for q in np.nonzero(qs.qtype == COUNTERFACTUAL)[0]:
        words = removed_object_phrase(qs.text[q])
        if words is None:
            reason = "no removed-object phrase in the question"
        elif int(qs.scene_index[q]) not in tables:
            reason = "scene has no object table"
        else:
            obj, reason = resolve_object(words, tables[int(qs.scene_index[q])])
            if obj is not None:
                qs.removed_object[q] = obj
                qs.removed_instance[q] = instance_id(
                    next(o for o in tables[int(qs.scene_index[q])] if int(o["object_id"]) == obj)
                )
                stats["resolved"] += 1
                continue
        stats[reason] = stats.get(reason, 0) + 1
    return stats
