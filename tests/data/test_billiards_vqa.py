"""The billiards VQA world: deterministic, CLEVRER-schema questions, object ids that match the slots, and
counterfactual answers consistent with the simulator."""

import json

import numpy as np

from cjepa.data.billiards_vqa import COLOUR_NAMES, make_scene, write_billiards_vqa
from cjepa.data.slot_store import SlotSplit
from cjepa.data.synthetic import SlotEmbedding
from cjepa.eval.vqa.questions import build_question_set, iter_answers, iter_texts, load_object_tables, resolve_removed_objects
from cjepa.eval.vqa.text import Vocab

KW = dict(num_slots=7, slot_dim=16, observed_frames=24, total_frames=32, seed=3)


def test_world_is_deterministic_and_loads_as_clevrer(tmp_path):
    s1 = write_billiards_vqa(tmp_path / "a", {"train": 6, "val": 3}, **KW)
    write_billiards_vqa(tmp_path / "b", {"train": 6, "val": 3}, **KW)
    assert (tmp_path / "a/questions/train.json").read_text() == (tmp_path / "b/questions/train.json").read_text()
    a, b = SlotSplit(tmp_path / "a/slots", "val"), SlotSplit(tmp_path / "b/slots", "val")
    assert list(a) == ["video_10000.mp4", "video_10001.mp4", "video_10002.mp4"]
    np.testing.assert_array_equal(np.asarray(a["video_10001.mp4"]), np.asarray(b["video_10001.mp4"]))
    scenes = json.loads((tmp_path / "a/questions/train.json").read_text())
    qs = build_question_set(scenes, Vocab.build(iter_texts(scenes), iter_answers(scenes)), 20, 12)
    assert qs.truncated == 0 and s1["train"]["videos"] == 6 and s1["train"]["counterfactual"] > 0
    stats = resolve_removed_objects(qs, load_object_tables(tmp_path / "a/annotations.json"))
    assert stats == {"resolved": s1["train"]["counterfactual"]}  # every removed object is named uniquely


def test_object_ids_say_which_slot_holds_which_object(tmp_path):
    write_billiards_vqa(tmp_path, {"val": 2}, noise=0.0, **KW)
    store = SlotSplit(tmp_path / "slots", "val")
    emb = SlotEmbedding(16)
    for key in store:
        slots, ids = np.asarray(store[key]), np.rint(store.extra(key, "object_ids")).astype(int)
        assert slots.shape == (24, 7, 16) and ids.shape == (24, 7)
        assert (ids == ids[0]).all()  # tracking: the binding never changes within a video
        empty = ids[0] == -1
        np.testing.assert_allclose(slots[:, empty], np.broadcast_to(emb.empty, slots[:, empty].shape), atol=1e-5)
        assert sorted(ids[0][~empty].tolist()) == list(range(1, int((~empty).sum()) + 1))  # instance ids k + 1


def test_counterfactual_answers_agree_with_the_simulator():
    """Removing an object that collides with nothing changes nothing: its counterfactual collisions equal the
    factual ones, and its presence is never "responsible" for a collision."""
    emb = SlotEmbedding(16)
    checked = 0
    for i in range(12):
        rng = np.random.default_rng([5, i])
        sc = make_scene(i, rng, emb, num_objects=5, num_slots=7, observed_frames=24, total_frames=32, noise=0.0)
        involved = {k for p in sc.factual for k in p}
        for x in range(5):
            if x not in involved:
                assert sc.counterfactual[x] == sc.factual
                checked += 1
            assert all(x not in p for p in sc.counterfactual[x])
        assert len({COLOUR_NAMES[c] for c in sc.video.colours}) == 5  # colours name objects uniquely
    assert checked > 0
