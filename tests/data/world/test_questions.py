"""cjepa.data.world.questions: CLEVRER schema and vocabulary, and answers that are true by construction.

The answers are checked with an executor written here, independently of the generator: it runs each
question's (or choice's) postfix program on the video's annotation alone, re-simulating the stored scene for
counterfactual programs, and must reach the stored answer.
"""

import numpy as np
import pytest

from cjepa.data.world.annotate import SceneFacts, clevrer_annotation, visible_collision_pairs
from cjepa.data.world.generate import generate_video
from cjepa.data.world.physics import simulate
from cjepa.data.world.questions import ANSWER_WORDS, QUESTION_WORDS, QuestionGenerator, tokenize
from cjepa.data.world.scene import Camera, ObjectSpec
from tests.data.conftest import tiny_world


class Executor:
    """CLEVRER-style postfix program executor over a world annotation (modules take arguments from the stack)."""

    def __init__(self, ann: dict):
        self.ann = ann
        self.T = len(ann["motion_trajectory"])
        self.props = {o["object_id"]: o for o in ann["object_property"]}
        ev = [{"type": "start", "objects": [], "frame": 0}, {"type": "end", "objects": [], "frame": self.T - 1}]
        ev += [{"type": e["type"], "objects": [e["object_id"]], "frame": e["frame_id"]} for e in ann["events"]]
        ev += [{"type": "collision", "objects": sorted(c["object_ids"]),
                "frame": c["frame_id"]} for c in ann["collision"]]
        self.events_all = sorted(ev, key=lambda e: e["frame"])
        self.future = [{"type": "collision", "objects": sorted(c["object_ids"]),
                        "frame": c["frame_id"]} for c in ann["future_collision"]]
        attr = {"color": "color", "material": "material", "shape": "shape"}
        self.modules = {
            "objects": (0, lambda: sorted(self.props)),
            "events": (0, lambda: list(self.events_all)),
            "unseen_events": (0, lambda: list(self.future)),
            "counterfact_events": (1, self.counterfact_events),
            "unique": (1, self.unique),
            "count": (1, lambda xs: str(len(xs))),
            "exist": (1, lambda xs: "yes" if xs else "no"),
            "filter_start": (1, lambda es: next(e for e in es if e["type"] == "start")),
            "filter_end": (1, lambda es: next(e for e in es if e["type"] == "end")),
            "query_frame": (1, lambda e: e["frame"]),
            "filter_moving": (2, lambda objs, t: [o for o in objs if self.visible(o, t) and self.moving(o, t)]),
            "filter_stationary": (2, lambda objs, t: [o for o in objs if self.visible(o, t) and not self.moving(o, t)]),
            "filter_in": (2, lambda es, o: [e for e in es if e["type"] == "in" and e["objects"][0] in self.ids(o)]),
            "filter_out": (2, lambda es, o: [e for e in es if e["type"] == "out" and e["objects"][0] in self.ids(o)]),
            "filter_collision": (
                2,
                lambda es, o: [e for e in es if e["type"] == "collision" and set(e["objects"]) & set(self.ids(o))],
            ),
            "query_object": (1, lambda e: e["objects"][0]),
            "query_collision_partner": (2, lambda e, o: next(x for x in e["objects"] if x != o)),
        }
        for k, field in attr.items():
            self.modules[f"filter_{k}"] = (2, lambda objs, v, f=field: [o for o in objs if self.props[o][f] == v])
            self.modules[f"query_{k}"] = (1, lambda o, f=field: self.props[o][f])

    @staticmethod
    def ids(o):
        return o if isinstance(o, list) else [o]

    @staticmethod
    def unique(xs):
        assert isinstance(xs, list) and len(xs) == 1, f"unique() on {xs}"
        return xs[0]

    def state(self, o: int, t: int) -> dict:
        return next(x for x in self.ann["motion_trajectory"][t]["objects"] if x["object_id"] == o)

    def visible(self, o, t) -> bool:
        return self.state(o, t)["inside_camera_view"]

    def moving(self, o, t) -> bool:
        return float(np.hypot(*self.state(o, t)["velocity"][:2])) > self.ann["world"]["moving_speed"]

    def counterfact_events(self, removed: int) -> list:
        w = self.ann["world"]
        specs = [ObjectSpec.from_json(d) for d in w["scene"]]
        cam = w["camera"]
        camera = Camera(cam["width"], cam["height"], cam["view_width"], cam["elevation_deg"])
        tr = simulate(specs, self.T, fps=w["fps"], substeps=w["substeps"], removed=[removed])
        return [{"type": "collision", "objects": list(p),
                 "frame": -1} for p in sorted(visible_collision_pairs(tr, camera, self.T))]

    def run(self, program: list[str]):
        stack: list = []
        for tok in program:
            if tok in self.modules:
                n, fn = self.modules[tok]
                args = stack[len(stack) - n :] if n else []
                del stack[len(stack) - n :]
                stack.append(fn(*args))
            else:
                stack.append(tok)
        assert len(stack) == 1, f"program {program} left {stack}"
        return stack[0]

    def ancestors(self, target: dict) -> list:
        found, frontier = [], [target]
        while frontier:
            e = frontier.pop()
            for c in self.events_all:
                if (
                    c["type"] in ("in", "collision")
                    and c["frame"] < e["frame"]
                    and set(c["objects"]) & set(e["objects"])
                    and c not in found
                ):
                    found.append(c)
                    frontier.append(c)
        return found


@pytest.fixture(scope="module")
def videos():
    cfg = tiny_world(num_frames=40, future_frames=30, min_objects=4, max_objects=6)
    return [generate_video(cfg, "train", i) for i in range(8)]


def test_schema_and_vocabulary(videos):
    """CLEVRER's fields and types; every word in CLEVRER's question vocabulary; descriptive answers in its answer
    vocabulary."""
    kinds = set()
    for v in videos:
        entry = v.questions
        assert entry["video_filename"] == f"{v.key}.mp4" and entry["scene_index"] == int(v.key.split("_")[1])
        for i, q in enumerate(entry["questions"]):
            assert q["question_id"] == i and isinstance(q["program"], list) and q["program"]
            words = tokenize(q["question"])
            assert set(words) <= QUESTION_WORDS, set(words) - QUESTION_WORDS
            kinds.add(q["question_type"])
            if q["question_type"] == "descriptive":
                assert q["answer"] in ANSWER_WORDS and "choices" not in q
                assert q["question_subtype"] in ("count", "exist", "query_color", "query_shape", "query_material")
            else:
                assert "answer" not in q and 2 <= len(q["choices"]) <= 4
                assert [c["choice_id"] for c in q["choices"]] == list(range(len(q["choices"])))
                answers = [c["answer"] for c in q["choices"]]
                assert set(answers) <= {"correct", "wrong"} and "correct" in answers and "wrong" in answers
                for c in q["choices"]:
                    assert set(tokenize(c["choice"])) <= QUESTION_WORDS, c["choice"]
    assert kinds == {"descriptive", "explanatory", "predictive", "counterfactual"}


def test_answers_follow_from_the_annotation(videos):
    """Descriptive programs evaluate to the answer; each choice's program holds exactly when the choice is 'correct'
    (collisions seen / after the video / in a re-simulation without the object; causal ancestors for explanatory)."""
    checked = {"descriptive": 0, "explanatory": 0, "predictive": 0, "counterfactual": 0}
    for v in videos:
        ex = Executor(v.meta)
        for q in v.questions["questions"]:
            t = q["question_type"]
            checked[t] += 1
            if t == "descriptive":
                assert ex.run(q["program"]) == q["answer"], (v.key, q)
            elif t == "explanatory":
                target = ex.run(q["program"][:-1])  # the program up to filter_ancestor names the target event
                anc = ex.ancestors(target)
                for c in q["choices"]:
                    assert (ex.run(c["program"]) in anc) == (c["answer"] == "correct"), (v.key, q["question"], c)
            else:
                for c in q["choices"]:
                    assert ex.run(c["program"]) == ("yes" if c["answer"] == "correct" else "no"), (v.key, q["question"],
                                                                                                   c)
    assert all(n > 0 for n in checked.values()), checked


def chain_scene(extra=()):
    """X (red sphere) knocks Y (blue cube) into Z (green cylinder); W (yellow sphere) rests aside; plus ``extra``
    objects."""
    specs = [ObjectSpec(0, "sphere", "red", "rubber", 0, (-2.5, 0.0), (3.0, 0.0)),
             ObjectSpec(1, "cube", "blue", "rubber", 0, (-0.5, 0.0), (0.0, 0.0)),
             ObjectSpec(2, "cylinder", "green", "rubber", 0, (1.2, 0.0), (0.0, 0.0)),
             ObjectSpec(3, "sphere", "yellow", "metal", 0, (0.0, -1.6), (0.0, 0.0))]
    return specs + [ObjectSpec(len(specs) + i, *e) for i, e in enumerate(extra)]


def facts_and_resim(specs, T=70):
    cam = Camera(160, 112)
    facts = SceneFacts(specs, simulate(specs, T + 20, fps=25), cam, T)

    def resimulate(removed):
        return visible_collision_pairs(simulate(specs, T, fps=25, removed=[removed]), cam, T)

    ann = clevrer_annotation(facts, scene_index=0, video_filename="v.mp4", world={"fps": 25.0, "substeps": 4})
    return facts, resimulate, Executor(ann)


def choice_pair(ex: Executor, program: list[str]) -> tuple[int, int]:
    """The two objects a counterfactual choice program names: source..., A..., filter_collision, B...,
    filter_collision, exist."""
    rest = program[program.index("counterfact_events") + 1 :]
    a = rest[: rest.index("filter_collision")]
    b = rest[len(a) + 1 : -2]
    return tuple(sorted((ex.run(a), ex.run(b))))


def test_counterfactual_answer_changes_when_the_removed_object_mattered():
    """Without X nothing collides (Y is never hit, so never hits Z); without the uninvolved W everything happens as
    before."""
    facts, resimulate, ex = facts_and_resim(chain_scene())
    assert {e.objects for e in facts.collisions()} == {(0, 1), (1, 2)}
    assert resimulate(3) == {(0, 1), (1, 2)} and resimulate(0) == set()
    happens = ["events", "objects", "blue", "filter_color", "unique", "filter_collision", "objects", "green",
               "filter_color", "unique",
               "filter_collision", "exist"]
    assert ex.run(happens) == "yes"
    without_x = ["objects", "red", "filter_color", "unique", "counterfact_events"] + happens[1:]
    without_w = ["objects", "yellow", "filter_color", "unique", "counterfact_events"] + happens[1:]
    assert ex.run(without_x) == "no" and ex.run(without_w) == "yes"


def test_counterfactual_question_marks_prevented_collision_wrong():
    """Removing X prevents Y-Z while an unrelated collision V-U survives: the generated question about X offers Y-Z,
    which the video shows, as a wrong choice, and V-U as a correct one."""
    extra = [("sphere", "purple", "metal", 0, (2.0, -2.0), (0.0, 2.5)),
             ("cube", "gray", "metal", 0, (2.0, 1.0), (0.0, 0.0))]
    facts, resimulate, ex = facts_and_resim(chain_scene(extra))
    assert {(0, 1), (1, 2), (4, 5)} <= {e.objects for e in facts.collisions()}
    assert (1, 2) not in resimulate(0) and (4, 5) in resimulate(0)
    asked = 0
    for seed in range(6):
        for q in QuestionGenerator(facts, np.random.default_rng(seed), resimulate).generate(max_counterfactual=6):
            if q["question_type"] != "counterfactual" or ex.run(q["program"][:-1]) != 0:
                continue
            answers = {choice_pair(ex, c["program"]): c["answer"] for c in q["choices"]}
            assert answers.get((1, 2)) == "wrong", answers  # it happens in the video, but not without X
            assert all(a == ("correct" if p in resimulate(0) else "wrong") for p, a in answers.items())
            asked += 1
    assert asked > 0
