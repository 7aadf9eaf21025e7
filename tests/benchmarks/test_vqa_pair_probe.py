"""benchmarks/vqa_pair_probe.py: the named pair's slots in the reasoner's frames, and a row per run."""

import json

import numpy as np
import pytest

from benchmarks import vqa_pair_probe as vp
from cjepa.data.billiards_vqa import cf_key, write_billiards_vqa
from cjepa.data.slot_store import open_split


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    write_billiards_vqa(root, {"train": 12, "val": 6}, num_slots=5, slot_dim=8, observed_frames=20, total_frames=26,
                        max_objects=4, oracle=True)
    return root


def test_words_name_the_pair_and_the_removed_object():
    assert vp.pair_colours("The red object collides with the blue object") == ("red", "blue")
    assert vp.removed_colour("Which of the following will happen if the cyan object is removed?") == "cyan"
    with pytest.raises(ValueError, match="not a collision choice"):
        vp.pair_colours("The presence of the red object")


@pytest.mark.parametrize("qtype", ["predictive", "counterfactual"])
def test_examples_are_the_named_objects_slots_in_the_reasoners_frames(world, qtype):
    x, y = vp.choice_examples(world, "val", qtype, 4)
    scene = json.loads((world / "questions" / "val.json").read_text())[0]
    ann = next(a for a in json.loads((world / "annotations.json").read_text()) if a["scene_index"] ==
               scene["scene_index"])
    colour = {o["color"]: o["object_id"] for o in ann["object_property"]}
    key = scene["video_filename"]
    ids = np.asarray(open_split("store", world / "slots", "val").extra(key, "object_ids"))[0]
    q = next(q for q in scene["questions"] if q["question_type"] == qtype)
    c = q["choices"][0]
    a, b = (int(np.flatnonzero(ids == colour[n] + 1)[0]) for n in vp.pair_colours(c["choice"]))
    if qtype == "predictive":
        arr = np.asarray(open_split("store", world / "oracle" / "slots", "val")[key])
        idx = np.rint(np.linspace(0, 19, 4)).astype(int) + 6  # the future: shifted by 26 - 20 frames
    else:
        removed = colour[vp.removed_colour(q["question"])]
        arr = np.asarray(open_split("store", world / "oracle" / "counterfactual", "val")[cf_key(key, removed)])
        idx = np.rint(np.linspace(0, 19, 4)).astype(int)
    # the first example is the first choice of the first scene's first question of this type
    np.testing.assert_array_equal(x[0], np.concatenate([arr[idx, a], arr[idx, b]], axis=-1))
    assert y[0] == (c["answer"] == "correct") and x.shape[1:] == (4, 16) and len(x) == len(y)


def test_a_run_appends_a_row_with_its_curve_and_prior(world, tmp_path):
    out = tmp_path / "rows.jsonl"
    assert vp.main(["--world", str(world), "--frames", "4", "--epochs", "10", "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["benchmark"] == "vqa_pair_probe" and row["git_sha"] and row["machine"] and row["date"]
    assert row["type"] == "predictive" and row["frames"] == 4 and len(row["curve"]) == 1
    assert 0 <= row["val_final"] <= 1 and 0.5 <= row["prior_train"] <= 1 and row["val_choices"] > 0


def test_a_world_without_oracle_stores_is_refused(tmp_path, capsys):
    assert vp.main(["--world", str(tmp_path), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "no oracle stores" in capsys.readouterr().err
