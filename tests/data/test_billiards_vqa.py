"""The billiards VQA world: deterministic, CLEVRER-schema questions, object ids that match the slots, and
counterfactual answers consistent with the simulator."""

import json

import numpy as np

from cjepa.data.billiards_vqa import COLOUR_NAMES, causal_ancestors, make_scene, scene_questions, write_billiards_vqa
from cjepa.data.slot_store import SlotSplit
from cjepa.data.synthetic import BilliardsVideo, SlotEmbedding
from cjepa.eval.vqa.questions import (
    build_question_set,
    iter_answers,
    iter_texts,
    load_object_tables,
    resolve_removed_objects,
)
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


def test_collisions_count_only_where_the_frames_show_them():
    """A collision recorded at frame t changes velocities between t and t + 1: one at the last observed frame is
    not in the observed facts but in the future ones, one at the last simulated frame in neither."""
    emb = SlotEmbedding(16)
    for i in range(12):
        rng = np.random.default_rng([9, i])
        sc = make_scene(i, rng, emb, num_objects=6, num_slots=7, observed_frames=24, total_frames=32, noise=0.0)
        pair = lambda a, b: (min(a, b), max(a, b))  # noqa: E731
        assert sc.factual == {pair(a, b) for t, a, b in sc.video.collisions if t < 23}
        assert sc.future == {pair(a, b) for t, a, b in sc.video.collisions if 23 <= t < 31}


def test_explanatory_answers_name_the_causal_ancestors():
    """"The presence of c" is correct iff c reaches the pair through collisions before the pair's first one."""
    emb = SlotEmbedding(16)
    checked = {"correct": 0, "wrong": 0}
    for i in range(20):
        rng = np.random.default_rng([4, i])
        sc = make_scene(i, rng, emb, num_objects=6, num_slots=7, observed_frames=24, total_frames=32, noise=0.0)
        for q in scene_questions(sc, rng):
            if q["question_type"] != "explanatory":
                continue
            names = {COLOUR_NAMES[c]: k for k, c in enumerate(sc.video.colours)}
            a, b = (names[w] for w in q["question"].split() if w in names)
            first = min(t for t, x, y in sc.video.collisions if {x, y} == {a, b})
            direct = {x + y - k for t, x, y in sc.video.collisions if t < first for k in (a, b) if k in (x, y)}
            for c in q["choices"]:
                k = names[c["choice"].split()[-2]]
                if k in direct:  # collided with the pair before: always a cause
                    assert c["answer"] == "correct"
                if not any(k in (x, y) for t, x, y in sc.video.collisions if t < first):  # touched nothing before
                    assert c["answer"] == "wrong"
                checked[c["answer"]] += 1
    assert min(checked.values()) > 5


def test_causal_ancestors_follow_chains_back_in_time():
    video = BilliardsVideo(np.zeros((10, 5, 2)), np.zeros((10, 5, 2)), np.ones(5), np.arange(5),
                           [(1, 3, 4), (2, 2, 3), (4, 0, 2), (6, 0, 1), (8, 1, 4)])
    assert causal_ancestors(video, (0, 1), 10) == {2, 3, 4}  # 0 met 2 (t=4), which met 3 (t=2), which met 4 (t=1)
    assert causal_ancestors(video, (0, 2), 10) == {3, 4}
    assert causal_ancestors(video, (3, 4), 10) == set()  # the first collision has no causes
    assert causal_ancestors(video, (1, 4), 10) == {0, 2, 3}  # 1 met 0 (t=6), who met 2 (t=4), who met 3 (t=2)


def test_oracle_stores_hold_the_simulators_future_and_reruns(tmp_path):
    write_billiards_vqa(tmp_path / "o", {"val": 3}, oracle=True, **KW)
    write_billiards_vqa(tmp_path / "p", {"val": 3}, **KW)
    # the oracle does not change the observed world or its questions
    assert (tmp_path / "o/questions/val.json").read_text() == (tmp_path / "p/questions/val.json").read_text()
    obs, full = SlotSplit(tmp_path / "o/slots", "val"), SlotSplit(tmp_path / "o/oracle/slots", "val")
    cf = SlotSplit(tmp_path / "o/oracle/counterfactual", "val")
    emb = SlotEmbedding(16)
    tables = load_object_tables(tmp_path / "o/annotations.json")
    for key in obs:
        f = np.asarray(full[key])
        assert f.shape == (32, 7, 16)
        np.testing.assert_array_equal(f[:24], np.asarray(obs[key]))
        ids = np.rint(obs.extra(key, "object_ids")[0]).astype(int)
        scene = int(key[6:11])
        rng = np.random.default_rng([3, sum(map(ord, "val")), scene - 10000, 7])
        n = int(rng.integers(3, 7))
        sc = make_scene(scene, rng, emb, num_objects=n, num_slots=7, observed_frames=24, total_frames=32, noise=0.0)
        slot_of = {int(o) - 1: s for s, o in enumerate(ids) if o > 0}
        future = emb(sc.video)[24:]  # (8, n, D) the simulator's own future, in the observed slot order
        for k in range(n):
            np.testing.assert_allclose(f[24:, slot_of[k]], future[:, k], atol=0.1)  # noise 0.02
        assert len(tables[scene]) == n
        for x in range(n):
            v, present = np.asarray(cf[f"{key}|remove:{x}"]), cf.extra(f"{key}|remove:{x}", "present")
            assert v.shape == (24, 7, 16) and (present[:, slot_of[x]] == 0).all() and (v[:, slot_of[x]] == 0).all()
            assert present.sum() == 24 * 6
            rerun = emb(sc.reruns[x])  # (24, n - 1, D)
            kept = [k for k in range(n) if k != x]
            for r, k in enumerate(kept):
                np.testing.assert_allclose(v[:, slot_of[k]], rerun[:, r], atol=0.1)
