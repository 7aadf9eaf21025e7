"""Questions about a world video in CLEVRER's JSON schema, with answers that are true by construction.

Every answer is computed from the simulation, never guessed: descriptive answers from the per-frame facts,
explanatory answers from the causal trace of events (CLEVRER's definition: earlier entrances and collisions
sharing an object with the event, transitively), predictive answers from the collisions the simulator
produces after the last shown frame, and counterfactual answers by re-simulating the scene with the object
removed and reading off which collisions then happen.

Schema (one entry per video, like an element of CLEVRER's ``questions/<split>.json``)::

    {"scene_index", "video_filename", "questions": [
        {"question_id", "question", "question_type": "descriptive", "question_subtype", "program", "answer"},
        {"question_id", "question", "question_type": "explanatory"|"predictive"|"counterfactual",
         "question_subtype", "program", "choices": [{"choice_id", "choice", "program", "answer": "correct"|"wrong"}]}]}

Wording uses only CLEVRER's question vocabulary (:data:`QUESTION_WORDS`) and descriptive answers only its
answer vocabulary (:data:`ANSWER_WORDS`), so a tokenizer built for CLEVRER reads these questions unchanged.
Programs are postfix lists of CLEVRER's executor modules (objects, events, unseen_events, counterfact_events,
filter_*, query_*, unique, count, exist, ...) with attribute values pushed before the filter that consumes
them; each module takes its arguments from the stack as in CLEVRER's executor. Every descriptive program
and every choice program evaluates, on the annotation, to the stored answer (tested with an executor).
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional

import numpy as np

from cjepa.data.world.annotate import Event, SceneFacts
from cjepa.data.world.scene import ObjectSpec, describe

QUESTION_WORDS = frozenset(
    "after and any are before begins between blue brown collide collides colliding collision collisions color cube "
    "cube's "
    "cube, cubes cyan cylinder cylinder's cylinder, cylinders ends enter entering enters entrance event exit exiting "
    "exits "
    "first following for gray green happen how if is last many material metal moving next not object object's object, "
    "objects of presence purple red removed removed, responsible rubber scene second shape sphere sphere's sphere, "
    "spheres "
    "stationary that the there to video what when which will with without yellow".split()
)
ANSWER_WORDS = frozenset("0 1 2 3 4 5 blue brown cube cyan cylinder gray green metal no purple red rubber sphere "
                         "yellow yes".split())

_ATTR_FILTER = {"colour": "filter_color", "material": "filter_material", "shape": "filter_shape"}
_ATTR_QUERY = {"colour": "query_color", "material": "query_material", "shape": "query_shape"}
_ATTR_WORD = {"colour": "color", "material": "material", "shape": "shape"}
_SUBSETS = [("shape",), ("colour",), ("material",), ("colour", "shape"), ("material", "shape"), ("colour", "material"),
            ("colour", "material", "shape")]


def tokenize(text: str) -> list[str]:
    """CLEVRER's tokenizer: lowercase, drop '?', split on spaces."""
    return [w for w in text.lower().replace("?", "").split(" ") if w]


# --------------------------------------------------------------------------------------------- referring


def _attr(spec: ObjectSpec, kind: str) -> str:
    return {"colour": spec.colour, "material": spec.material, "shape": spec.shape}[kind]


def _matches(spec: ObjectSpec, kinds: tuple[str, ...], ref: ObjectSpec) -> bool:
    return all(_attr(spec, k) == _attr(ref, k) for k in kinds)


class Referrer:
    """Shortest unambiguous description of each object among the scene's objects, and its program."""

    def __init__(self, specs: list[ObjectSpec], rng: np.random.Generator):
        self.specs = specs
        self.kinds: dict[int, tuple[str, ...]] = {}
        for s in specs:
            for size in (1, 2, 3):
                options = [k for k in _SUBSETS if len(k) == size and sum(_matches(o, k, s) for o in specs) == 1]
                if options:
                    self.kinds[s.object_id] = options[int(rng.integers(len(options)))]
                    break

    def phrase(self, oid: int, exclude: str = "") -> str:
        """'red cube', 'metal object', ...; ``exclude`` drops one attribute (the one a question asks for)."""
        s = self.specs[oid]
        kinds = self.kinds[oid]
        if exclude and exclude in kinds:
            kinds = self.without(oid, exclude)
        return describe(s, "colour" in kinds, "material" in kinds, "shape" in kinds)

    def without(self, oid: int, exclude: str) -> tuple[str, ...]:
        """A unique description of ``oid`` that avoids attribute ``exclude`` (falls back to the two others)."""
        s = self.specs[oid]
        for k in _SUBSETS:
            if exclude not in k and sum(_matches(o, k, s) for o in self.specs) == 1:
                return k
        return tuple(k for k in ("colour", "material", "shape") if k != exclude)

    def program(self, oid: int, exclude: str = "") -> list[str]:
        kinds = self.kinds[oid] if not exclude or exclude not in self.kinds[oid] else self.without(oid, exclude)
        prog = ["objects"]
        for k in kinds:
            prog += [_attr(self.specs[oid], k), _ATTR_FILTER[k]]
        return prog + ["unique"]

    def unique_without(self, oid: int, exclude: str) -> bool:
        kinds = self.without(oid, exclude)
        return sum(_matches(o, kinds, self.specs[oid]) for o in self.specs) == 1


def _plural(kind: Optional[str], value: str) -> str:
    if kind is None:
        return "objects"
    if kind == "shape":
        return value + "s"
    return f"{value} objects"


# --------------------------------------------------------------------------------------------- generator


class QuestionGenerator:
    """Builds the questions of one video. ``resimulate(object_id)`` returns the visible collision pairs of the
    shown frames in the scene re-simulated without that object (counterfactual ground truth)."""

    def __init__(self, facts: SceneFacts, rng: np.random.Generator, resimulate: Callable[[int], set[tuple[int, int]]]):
        self.f, self.rng, self.resimulate = facts, rng, resimulate
        self.specs = facts.specs
        self.ref = Referrer(self.specs, rng)
        self.end = facts.shown_frames - 1

    def generate(self, *, max_descriptive: int = 10, max_explanatory: int = 2, max_predictive: int = 1,
                 max_counterfactual: int = 2) -> list[dict]:
        qs: list[dict] = []
        desc = [q for q in (t() for t in self._descriptive_templates()) if q is not None]
        self.rng.shuffle(desc)
        qs += desc[:max_descriptive]
        qs += self._explanatory(max_explanatory)
        qs += self._predictive(max_predictive)
        qs += self._counterfactual(max_counterfactual)
        for i, q in enumerate(qs):
            q["question_id"] = i
        return [{"question_id": q.pop("question_id"), **q} for q in qs]

    # -- descriptive
    def _descriptive_templates(self):
        return [self._count_enter, self._count_collisions, lambda: self._count_motion("moving", "end"),
                lambda: self._count_motion("stationary", "begin"), lambda: self._exist_motion("stationary", "end"),
                lambda: self._exist_motion("moving", "begin"), lambda: self._query_unique("colour"),
                lambda: self._query_unique("shape"), lambda: self._query_unique("material"), self._query_entering,
                self._query_partner]

    def _descriptive(self, subtype: str, question: str, program: list[str], answer) -> Optional[dict]:
        answer = str(answer)
        if answer not in ANSWER_WORDS:
            return None  # e.g. a count of 6: CLEVRER's answer vocabulary stops at 5
        return {"question": question, "question_type": "descriptive", "question_subtype": subtype, "program": program,
                "answer": answer}

    def _count_enter(self):
        entries = [e for e in self.f.events if e.kind == "in"]
        n = len(entries)
        if n != len(self.f.entering()):
            return None  # an object entered twice: "how many objects" and "how many entrances" would differ
        return self._descriptive("count", "How many objects enter the scene?",
                                 ["events", "objects", "filter_in", "count"], n)

    def _count_collisions(self):
        n = len(self.f.collisions())
        return self._descriptive("count", "How many collisions happen?",
                                 ["events", "objects", "filter_collision", "count"], n)

    def _attribute_filter(self) -> tuple[Optional[str], str, list[str], Callable[[ObjectSpec], bool]]:
        """A random attribute restriction (or none) for counting/existence questions."""
        kind = [None, "colour", "material", "shape"][int(self.rng.integers(4))]
        if kind is None:
            return None, "", ["objects"], lambda s: True
        value = _attr(self.specs[int(self.rng.integers(len(self.specs)))], kind)
        return kind, value, ["objects", value, _ATTR_FILTER[kind]], lambda s: _attr(s, kind) == value

    def _state_at(self, which: str, when: str) -> tuple[int, list[str], str]:
        t = 0 if when == "begin" else self.end
        phrase = "when the video begins" if when == "begin" else "when the video ends"
        prog = ["events", "filter_start" if when == "begin" else "filter_end", "query_frame",
                "filter_moving" if which == "moving" else "filter_stationary"]
        return t, prog, phrase

    def _select(self, t: int, which: str, keep) -> list[int]:
        mov = self.f.moving[t]
        return [s.object_id for s in self.specs if self.f.visible[t, s.object_id] and keep(s)
                and (mov[s.object_id] if which == "moving" else not mov[s.object_id])]

    def _count_motion(self, which: str, when: str):
        kind, value, prog, keep = self._attribute_filter()
        t, tail, phrase = self._state_at(which, when)
        n = len(self._select(t, which, keep))
        return self._descriptive("count", f"How many {_plural(kind, value)} are {which} {phrase}?",
                                 prog + tail + ["count"], n)

    def _exist_motion(self, which: str, when: str):
        kind, value, prog, keep = self._attribute_filter()
        t, tail, phrase = self._state_at(which, when)
        yes = bool(self._select(t, which, keep))
        return self._descriptive("exist", f"Are there any {which} {_plural(kind, value)} {phrase}?",
                                 prog + tail + ["exist"], "yes" if yes else "no")

    def _query_unique(self, kind: str):
        candidates = [s.object_id for s in self.specs if self.ref.unique_without(s.object_id, kind)]
        if not candidates:
            return None
        oid = candidates[int(self.rng.integers(len(candidates)))]
        q = f"What {_ATTR_WORD[kind]} is the {self.ref.phrase(oid, exclude=kind)}?"
        return self._descriptive(_ATTR_QUERY[kind], q, self.ref.program(oid, exclude=kind) + [_ATTR_QUERY[kind]],
                                 _attr(self.specs[oid], kind))

    def _query_entering(self):
        ent = self.f.entering()
        if len(ent) != 1 or sum(e.kind == "in" for e in self.f.events) != 1:
            return None
        kind = ("colour", "shape", "material")[int(self.rng.integers(3))]
        q = f"What {_ATTR_WORD[kind]} is the object that enters the scene?"
        prog = ["events", "objects", "filter_in", "unique", "query_object", _ATTR_QUERY[kind]]
        return self._descriptive(_ATTR_QUERY[kind], q, prog, _attr(self.specs[ent[0]], kind))

    def _query_partner(self):
        partners: dict[int, set[int]] = {}
        for e in self.f.collisions():
            a, b = e.objects
            partners.setdefault(a, set()).add(b)
            partners.setdefault(b, set()).add(a)
        single = [
            o
            for o, p in sorted(partners.items())
            if len(p) == 1 and sum(o in e.objects for e in self.f.collisions()) == 1
        ]
        if not single:
            return None
        oid = single[int(self.rng.integers(len(single)))]
        other = next(iter(partners[oid]))
        kind = ("colour", "shape", "material")[int(self.rng.integers(3))]
        q = f"What {_ATTR_WORD[kind]} is the object that collides with the {self.ref.phrase(oid)}?"
        obj = self.ref.program(oid)
        prog = ["events"] + obj + ["filter_collision", "unique"] + obj + ["query_collision_partner", _ATTR_QUERY[kind]]
        return self._descriptive(_ATTR_QUERY[kind], q, prog, _attr(self.specs[other], kind))

    # -- multiple choice
    def _collision_program(self, source: list[str], a: int, b: int) -> list[str]:
        """Collisions between a and b: source events, filtered by a's involvement, then by b's."""
        return source + self.ref.program(a) + ["filter_collision"] + self.ref.program(b) + ["filter_collision"]

    def _event_text(self, e: Event) -> tuple[str, list[str]]:
        if e.kind == "collision":
            a, b = e.objects
            text = f"The collision between the {self.ref.phrase(a)} and the {self.ref.phrase(b)}"
            return text, self._collision_program(["events"], a, b) + ["unique"]
        (a,) = e.objects
        return f"The {self.ref.phrase(a)}'s entering the scene", ["events"] + self.ref.program(a) + ["filter_in",
                                                                                                     "unique"]

    def _choices(self, items: list[tuple[str, list[str], bool]]) -> list[dict]:
        order = self.rng.permutation(len(items))
        return [{"choice_id": i, "choice": items[k][0], "program": items[k][1],
                 "answer": "correct" if items[k][2] else "wrong"}
                for i, k in enumerate(order)]

    def _mc(self, qtype: str, subtype: str, question: str, program: list[str], items) -> dict:
        return {"question": question, "question_type": qtype, "question_subtype": subtype, "program": program,
                "choices": self._choices(items)}

    def _nameable(self, e: Event) -> bool:
        """'the collision between A and B' / 'A's entering' / 'A's exiting' names one event only if it happened once."""
        return sum(x.kind == e.kind and x.objects == e.objects for x in self.f.events) == 1

    def _explanatory(self, limit: int) -> list[dict]:
        targets = [e for e in self.f.events if e.kind in ("collision",
                                                          "out") and self._nameable(e) and self.f.ancestors(e)]
        self.rng.shuffle(targets)
        out = []
        for target in targets:
            if len(out) >= limit:
                break
            anc = {a.key() for a in self.f.ancestors(target)}
            candidates = [
                e
                for e in self.f.events
                if e.kind in ("in", "collision") and e.key() != target.key() and self._nameable(e)
            ]
            right = [e for e in candidates if e.key() in anc]
            wrong = [e for e in candidates if e.key() not in anc]
            if not wrong or not right:
                continue
            n_right = min(len(right), int(self.rng.integers(1, 3)))
            n_wrong = min(len(wrong), 4 - n_right, int(self.rng.integers(1, 3)))
            picks = [right[i] for i in self.rng.choice(len(right), n_right, replace=False)]
            picks += [wrong[i] for i in self.rng.choice(len(wrong), n_wrong, replace=False)]
            items = [(*self._event_text(e), e.key() in anc) for e in picks]
            if target.kind == "collision":
                a, b = target.objects
                q = (f"Which of the following is responsible for the collision between the {self.ref.phrase(a)} "
                     f"and the {self.ref.phrase(b)}?")
                prog = self._collision_program(["events"], a, b) + ["unique", "filter_ancestor"]
                sub = "cause_of_collision"
            else:
                (a,) = target.objects
                q = f"Which of the following is responsible for the {self.ref.phrase(a)}'s exiting the scene?"
                prog = ["events"] + self.ref.program(a) + ["filter_out", "unique", "filter_ancestor"]
                sub = "cause_of_exit"
            out.append(self._mc("explanatory", sub, q, prog, items))
        return out

    def _pair_text(self, a: int, b: int, source: list[str]) -> tuple[str, list[str]]:
        if self.rng.random() < 0.5:
            a, b = b, a
        text = f"The {self.ref.phrase(a)} collides with the {self.ref.phrase(b)}"
        return text, self._collision_program(source, a, b) + ["exist"]

    def _non_colliding_pairs(self, exclude: set[tuple[int, int]], objects: list[int]) -> list[tuple[int, int]]:
        return [p for p in itertools.combinations(sorted(objects), 2) if p not in exclude]

    def _predictive(self, limit: int) -> list[dict]:
        if limit <= 0 or not self.f.future_collisions:
            return []
        future_all = self.f.traj.collision_pairs(self.f.shown_frames)  # any future contact, seen or not
        seen = sorted({e.objects for e in self.f.future_collisions})
        present_end = [s.object_id for s in self.specs if self.f.traj.present[self.end, s.object_id]]
        wrong = self._non_colliding_pairs(future_all, present_end)
        if not wrong:
            return []
        right = seen[int(self.rng.integers(len(seen)))]
        bad = wrong[int(self.rng.integers(len(wrong)))]
        items = [(*self._pair_text(*right, ["unseen_events"]), True),
                 (*self._pair_text(*bad, ["unseen_events"]), False)]
        return [self._mc("predictive", "collision", "What will happen next?", ["unseen_events"], items)]

    def _counterfactual(self, limit: int) -> list[dict]:
        involved = sorted({o for e in self.f.collisions() for o in e.objects})
        order = [involved[i] for i in self.rng.permutation(len(involved))]
        out = []
        for removed in order:
            if len(out) >= limit:
                break
            cf = self.resimulate(removed)
            others = [
                s.object_id
                for s in self.specs
                if s.object_id != removed and self.f.traj.present[: self.f.shown_frames, s.object_id].any()
            ]
            factual = {e.objects for e in self.f.collisions() if removed not in e.objects}
            right = sorted(cf)
            # distractors: collisions the removal prevents first, then pairs that never touch
            wrong = sorted(factual - cf) + [p for p in self._non_colliding_pairs(cf | factual, others)]
            if not right or not wrong:
                continue
            n_right = min(len(right), int(self.rng.integers(1, 3)))
            n_wrong = min(len(wrong), 4 - n_right)
            prevented = sorted(factual - cf)
            picks_wrong = prevented[:n_wrong]  # a prevented collision is the informative distractor
            rest = [p for p in wrong if p not in picks_wrong]
            if len(picks_wrong) < n_wrong and rest:
                picks_wrong += [rest[i] for i in self.rng.choice(len(rest), min(len(rest), n_wrong - len(picks_wrong)),
                                                                 replace=False)]
            picks_right = [right[i] for i in self.rng.choice(len(right), n_right, replace=False)]
            source = self.ref.program(removed) + ["counterfact_events"]
            items = [(*self._pair_text(*p, source),
                      True) for p in picks_right] + [(*self._pair_text(*p, source), False) for p in picks_wrong]
            q = f"What will happen without the {self.ref.phrase(removed)}?"
            prog = source
            out.append(self._mc("counterfactual", "remove", q, prog, items))
        return out


def question_entry(questions: list[dict], *, scene_index: int, video_filename: str) -> dict:
    return {"scene_index": scene_index, "video_filename": video_filename, "questions": questions}
