"""CLEVRER-schema question loading, row layout, schema errors, and naming the removed object."""

import json

import numpy as np
import pytest

from cjepa.eval.vqa.questions import (
    COUNTERFACTUAL,
    QuestionError,
    build_question_set,
    has_answers,
    iter_answers,
    iter_texts,
    load_object_tables,
    load_question_file,
    removed_object_phrase,
    resolve_object,
    resolve_removed_objects,
)
from cjepa.eval.vqa.text import Vocab
from tests.eval.vqa.helpers import desc, mc, scene

SCENES = [
    scene(10000, [
        desc(0, "How many spheres are there?", "2"),
        mc(1, "counterfactual", "Which of the following will happen if the cyan cylinder is removed?",
           ["correct", "wrong", "wrong"]),
    ]),
    scene(10001, [mc(0, "predictive", "Which event will happen next?", ["wrong", "correct"])]),
]


def qset(scenes=SCENES, **kw):
    vocab = Vocab.build(iter_texts(scenes), iter_answers(scenes))
    return build_question_set(scenes, vocab, 20, 12, **kw), vocab


def test_rows_follow_the_original_layout():
    """Descriptive: one row, question padded to 20+12; multiple choice: one row per choice = question (20) ++ choice
    (12)."""
    qs, vocab = qset()
    assert len(qs) == 3 and qs.num_rows == 1 + 3 + 2 and qs.tokens.shape == (6, 32)
    assert qs.qtype.tolist() == [0, 3, 2] and qs.row_count.tolist() == [1, 3, 2]
    d = qs.tokens[0]
    assert d[:5].tolist() == [vocab.words[w] for w in ["how", "many", "spheres", "are", "there"]] and not d[5:].any()
    r = qs.rows_of(1)
    q_part, c_part = qs.tokens[r][:, :20], qs.tokens[r][:, 20:]
    assert (q_part == q_part[0]).all()  # the same question in every choice row
    assert c_part[0, :3].tolist() == [vocab.words[w] for w in ["the", "choice", "number"]]
    assert qs.pad[r][:, 20:][:, 4:].all() and not qs.pad[r][:, 20:][:, :4].any()
    assert qs.label.tolist() == [vocab.answers["2"], 1, 0, 0, 0, 1]
    assert qs.choice_id.tolist() == [-1, 0, 1, 2, 0, 1]


def test_subset_renumbers_rows():
    qs, _ = qset()
    sub = qs.subset(np.array([2, 0]))
    assert sub.qtype.tolist() == [2,
                                  0] and sub.row_start.tolist() == [0, 2] and sub.label.tolist() == [0, 1, qs.label[0]]


@pytest.mark.parametrize("bad, match", [
    ({"question_id": 0, "question_type": "causal", "question": "x"}, "question_type 'causal'"),
    ({"question_id": 0, "question_type": "descriptive", "question": "x"}, "without 'answer'"),
    ({"question_id": 0, "question_type": "predictive", "question": "x", "choices": []}, "non-empty 'choices'"),
    ({"question_id": 0, "question_type": "predictive", "question": "x",
      "choices": [{"choice_id": 0, "choice": "y", "answer": "yes"}]},
     "not 'correct' or 'wrong'"),
    ({"question_type": "descriptive", "question": "x", "answer": "1"}, "no 'question_id'"),
])
def test_schema_errors_name_the_scene_and_question(bad, match):
    with pytest.raises(QuestionError, match=match) as err:
        qset([scene(7, [bad])])
    assert "scene 7" in str(err.value)


def test_unlabelled_files_load_for_test_splits():
    """CLEVRER's test file has no answers: detected, loaded with label -1 (predictions only)."""
    test_file = [scene(15000, [{"question_id": 0, "question_type": "descriptive", "question": "what color"}])]
    assert has_answers(SCENES) and not has_answers(test_file)
    qs, _ = qset([scene(15000, [{"question_id": 0, "question_type": "descriptive", "question": "what color"}])],
                 labelled=False)
    assert qs.label.tolist() == [-1] and not qs.labelled


def test_load_question_file_errors(tmp_path):
    with pytest.raises(QuestionError, match="not found"):
        load_question_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(QuestionError, match="not valid JSON"):
        load_question_file(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text("{}")
    with pytest.raises(QuestionError, match="list of scenes"):
        load_question_file(tmp_path / "obj.json")


@pytest.mark.parametrize("text, words", [
    ("Which of the following will happen if the cyan cylinder is removed?", ["cyan", "cylinder"]),
    ("Which event will not happen if the red rubber sphere is removed?", ["red", "rubber", "sphere"]),
    ("Without the gray object, what will happen?", ["gray", "object"]),
    ("Without the metal cube, which event will happen?", ["metal", "cube"]),
    ("What will happen without the green sphere?", ["green", "sphere"]),
    ("What color is the cube?", None),
])
def test_removed_object_phrase_reads_clevrer_templates(text, words):
    assert removed_object_phrase(text) == words


OBJECTS = [
    {"object_id": 0, "color": "cyan", "material": "rubber", "shape": "cylinder"},
    {"object_id": 1, "color": "red", "material": "metal", "shape": "sphere"},
    {"object_id": 2, "color": "red", "material": "rubber", "shape": "cube"},
]


def test_resolve_object_needs_a_unique_match():
    assert resolve_object(["cyan", "cylinder"], OBJECTS) == (0, "")
    assert resolve_object(["metal", "object"], OBJECTS) == (1, "")
    assert resolve_object(["red", "object"], OBJECTS)[0] is None  # two red objects: never guessed
    assert resolve_object(["blue", "cube"], OBJECTS) == (None, "no object of the scene matches the phrase")
    assert resolve_object(["shiny", "cube"], OBJECTS)[0] is None


def test_object_tables_from_dir_list_and_mapping(tmp_path):
    """CLEVRER annotation files in nested folders, a list of annotations, or {scene: objects} all load."""
    d = tmp_path / "annotations" / "annotation_10000-11000"
    d.mkdir(parents=True)
    (d / "annotation_10000.json").write_text(json.dumps({"scene_index": 10000, "object_property": OBJECTS,
                                                         "motion_trajectory": []}))
    assert load_object_tables(tmp_path / "annotations") == {10000: OBJECTS}
    (tmp_path / "list.json").write_text(json.dumps([{"scene_index": 3, "object_property": OBJECTS}]))
    assert load_object_tables(tmp_path / "list.json") == {3: OBJECTS}
    (tmp_path / "map.json").write_text(json.dumps({"video_00004.mp4": OBJECTS, "5": OBJECTS[:1]}))
    assert load_object_tables(tmp_path / "map.json") == {4: OBJECTS, 5: OBJECTS[:1]}
    with pytest.raises(QuestionError, match="not found"):
        load_object_tables(tmp_path / "none")


def test_resolve_removed_objects_fills_ids_and_counts_failures():
    scenes = [
        scene(1,
              [mc(0, "counterfactual", "Which of the following will happen if the cyan cylinder is removed?",
                  ["correct"])]),
        scene(2,
              [mc(0, "counterfactual", "Which of the following will happen if the red object is removed?", ["wrong"])]),
        scene(3,
              [mc(0, "counterfactual", "Which of the following will happen if the red sphere is removed?", ["wrong"])]),
    ]
    qs, _ = qset(scenes)
    stats = resolve_removed_objects(qs, {1: OBJECTS, 2: OBJECTS})
    assert qs.removed_object.tolist() == [0, -1, -1]
    assert qs.removed_instance.tolist() == [1, -1, -1]  # object_id + 1: the mask convention (no mask_id given)
    assert stats == {"resolved": 1, "several objects of the scene match the phrase": 1, "scene has no object table": 1}
    assert (qs.qtype == COUNTERFACTUAL).all()


def test_questions_and_object_tables_from_video_shards(tmp_path):
    """A shard split written by `cjepa data` serves as question file (KEY.questions.json) and object tables
    (KEY.json)."""
    from cjepa.data.shards import ShardWriter

    frames = np.zeros((2, 16, 16, 3), np.uint8)
    w = ShardWriter(tmp_path, "val", shard_size=1, source="world")
    for i in (11, 10):
        w.write(f"v{i}", frames, meta={"scene_index": i, "object_property": OBJECTS[: i - 9]},
                questions=scene(i, [desc(0, "How many spheres are there?", "1")]))
    w.close()
    scenes = load_question_file(tmp_path / "val")
    assert [s["scene_index"] for s in scenes] == [10, 11]
    assert load_object_tables(tmp_path / "val") == {10: OBJECTS[:1], 11: OBJECTS[:2]}
    assert load_object_tables(tmp_path, split="val") == {10: OBJECTS[:1], 11: OBJECTS[:2]}  # shard root + split


def test_world_questions_load_and_name_their_removed_objects():
    """Contract with the built-in physics world (cjepa.data.world): its questions tokenise without truncation
    in CLEVRER's lengths, and every counterfactual question names exactly one object of its annotation."""
    from cjepa.config import load_config
    from cjepa.data.world.generate import generate_video

    cfg = load_config([], ["world.height=32", "world.width=48", "world.num_frames=32", "world.future_frames=8"]).world
    vids = [generate_video(cfg, "val", i) for i in range(4)]
    scenes = [v.questions for v in vids]
    qs = build_question_set(scenes, Vocab.build(iter_texts(scenes), iter_answers(scenes)), 20, 12)
    assert qs.truncated == 0 and (qs.qtype == COUNTERFACTUAL).sum() > 0
    stats = resolve_removed_objects(qs, {v.meta["scene_index"]: v.meta["object_property"] for v in vids})
    assert stats == {"resolved": int((qs.qtype == COUNTERFACTUAL).sum())}
    cf = qs.qtype == COUNTERFACTUAL
    # the world's mask ids, as extraction stores them
    assert (qs.removed_instance[cf] == qs.removed_object[cf] + 1).all()
