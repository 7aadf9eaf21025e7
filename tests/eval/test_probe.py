"""Attention probing (cjepa/eval/probe.py): the ratio on hand-made attention maps, events, and the outputs."""

import json

import numpy as np
import pytest
import torch

from cjepa.eval.probe import (
    ProbeError,
    ProbeEvent,
    ProbeVideo,
    collision_events,
    partner_ratio,
    query_steps,
    run_probe,
    store_videos,
    summarise,
)
from cjepa.models.predictor import MaskedSlotPredictor


def hand_made_rows() -> torch.Tensor:
    """Two query tokens over a (T=2, S=5) grid; query slot 0, partner slot 2, others 1 and 3, slot 4 empty.
    Rows sum to 1. Per-slot mass over time: query 1 -> [0.2, 0.1, 0.4, 0.2, 0.1], query 2 -> [0.3, 0.3, 0.2, 0.0, 0.2];
    averaged: others 0.2 and 0.1 (mean 0.15), partner 0.3 -> ratio exactly 2.0."""
    q1 = [[0.1, 0.05, 0.1, 0.2, 0.05], [0.1, 0.05, 0.3, 0.0, 0.05]]
    q2 = [[0.2, 0.1, 0.15, 0.0, 0.1], [0.1, 0.2, 0.05, 0.0, 0.1]]
    return torch.tensor([q1, q2], dtype=torch.float64)


def test_partner_ratio_on_a_hand_made_map():
    rows = hand_made_rows()
    assert torch.allclose(rows.sum(dim=(1, 2)), torch.ones(2, dtype=torch.float64))
    assert partner_ratio(rows, partner=2, others=[1, 3]) == pytest.approx(2.0, abs=1e-12)
    # the partner term is the partner's mass, not another slot's: slot 1 as partner would give 0.2 / 0.2 = 1.0
    assert partner_ratio(rows, partner=1, others=[2, 3]) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least one other object"):
        partner_ratio(rows, partner=2, others=[])


def test_uniform_attention_is_exactly_no_preference():
    rows = torch.full((3, 4, 6), 1 / 24, dtype=torch.float64)
    assert partner_ratio(rows, partner=1, others=[2, 3, 5]) == pytest.approx(1.0, abs=1e-12)


def event(video="v", query=0, partner=2, others=(1, 3)) -> ProbeEvent:
    return ProbeEvent(video, 10, 4, query, partner, query, partner, tuple(others))


def test_summarise_is_a_ratio_of_sums_over_events_per_layer():
    """Layer 0: event 1 is the hand-made map (partner 0.3, others 0.15: ratio 2), event 2 the same map with the
    partner's and slot 3's columns swapped (partner 0.1, others 0.25: ratio 0.4). Over events the ratio is
    sum partner / sum others = 0.4 / 0.4 = 1.0, not the mean of per-event ratios (1.2). Layer 1 (the last) is the
    hand-made map in both events: 2.0. The layer-averaged map: (0.3 + 0.2) / (0.15 + 0.2) = 10/7."""
    rows = hand_made_rows().float()  # (Q=2, T=2, S=5)
    swapped = rows.clone()
    swapped[:, :, [2, 3]] = swapped[:, :, [3, 2]]
    maps = []
    for first in (rows, swapped):
        m = torch.zeros(2, 2, 2, 5)  # (layers, query step, T, S)
        m[0], m[1] = first, rows  # query steps 0 and 1 hold the two query rows
        maps.append(m)
    res = summarise(maps, [event(), event()], steps=[0, 1], collision_index=1)
    assert res["ratio_per_layer"] == pytest.approx([1.0, 2.0], abs=1e-6)
    assert res["ratio"] == pytest.approx(2.0, abs=1e-6)  # the headline is the last layer
    assert res["ratio_layer_mean"] == pytest.approx(10 / 7, abs=1e-6)
    assert (
        res["events"] == 2
        and res["per_event"][0]["partner"] == pytest.approx(0.3)
        and res["per_event"][1]["others"] == pytest.approx(0.15)
    )
    assert res["curve"]["dt"] == [-1, 0] and res["curve"]["partner_last"] == pytest.approx([0.125, 0.175])
    with pytest.raises(ProbeError, match="no collision"):
        summarise([], [], steps=[1], collision_index=1)


def test_collision_events_map_objects_to_slots_and_skip_windows_off_the_video():
    """Slot order is shuffled (slot 3 holds object 0, ...); each collision gives two events (a masked, b masked)."""
    T, S = 20, 5
    ids = np.tile(np.array([2, -1, 1, 0, 3]), (T, 1))  # slot -> object
    v = ProbeVideo(np.zeros((T, S, 4), np.float32), ids, [(6, 0, 1), (1, 2, 3), (18, 1, 3)])
    events, skipped = collision_events({"v": v}, history_frames=4, frameskip=2, collision_index=2)
    assert skipped == 2  # frame 1: starts before 0; frame 18: ends past the video
    assert [(e.query_object, e.partner_object, e.query_slot,
             e.partner_slot) for e in events] == [(0, 1, 3, 2), (1, 0, 2, 3)]
    assert events[0].start == 2 and events[0].other_slots == (0, 4)  # objects 2 and 3; the empty slot is no object
    # a video slot that loses its object inside the window cannot stand for it
    ids2 = ids.copy()
    ids2[4, 3] = -1
    events, skipped = collision_events({"v": ProbeVideo(v.slots, ids2, [(6, 0, 1)])}, history_frames=4, frameskip=2,
                                       collision_index=2)
    assert events == [] and skipped == 1
    assert query_steps(6, 3, 1) == [2, 3, 4] and query_steps(4, 1, 2) == [1, 2, 3]


def test_run_probe_on_a_tiny_predictor_writes_json_plots_and_tensorboard(tmp_path):
    model = MaskedSlotPredictor(num_slots=5, slot_dim=16, history_frames=4, pred_frames=2, depth=2, heads=2, mlp_dim=32,
                                dropout=0.0).eval()
    rng = np.random.default_rng(0)
    ids = np.tile(np.array([2, -1, 1, 0, 3]), (30, 1))
    videos = {f"v{i}": ProbeVideo(rng.normal(size=(30, 5, 16)).astype(np.float32), ids,
                                  [(10, 0, 1), (14, 2, 3)]) for i in range(3)}
    res = run_probe(model, videos, frameskip=2, k=1, device="cpu", out=tmp_path)
    assert res["events"] == 12 and res["query_steps"] == [1, 2, 3] and len(res["ratio_per_layer"]) == 2
    assert res["ratio_ci95"][0] <= res["ratio"] <= res["ratio_ci95"][1]
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert saved["ratio"] == res["ratio"]
    assert (tmp_path / "probe_curve.png").stat().st_size > 1000 and (
        tmp_path / "probe_example.png"
    ).stat().st_size > 1000
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    with pytest.raises(ProbeError, match="masked history step 1..3"):
        run_probe(model, videos, frameskip=2, k=1, device="cpu", collision_index=0)


def test_store_videos_read_object_ids_and_collision_annotations(tmp_path):
    from cjepa.data.billiards_vqa import write_billiards_vqa

    write_billiards_vqa(tmp_path, {"val": 4}, num_slots=5, slot_dim=8, observed_frames=64, total_frames=68,
                        max_objects=4)
    videos = store_videos("store", str(tmp_path / "slots"), "val", str(tmp_path / "annotations.json"))
    anns = {a["video_filename"]: a for a in json.loads((tmp_path / "annotations.json").read_text())}
    assert videos and set(videos) <= set(anns)
    key, v = next(iter(videos.items()))
    c = anns[key]["collision"][0]
    assert v.collisions[0] == (c["frame_id"], c["object_ids"][0] + 1,
                               c["object_ids"][1] + 1)  # instance ids, as object_ids
    assert v.slot_object.shape == v.slots.shape[:2]
    with pytest.raises(ProbeError, match="vqa.annotations"):
        store_videos("store", str(tmp_path / "slots"), "val", "")


def test_bootstrap_interval_resamples_whole_videos():
    from cjepa.eval.probe import bootstrap_interval

    same = np.array([[2.0, 1.0], [4.0, 2.0], [1.0, 0.5]])
    assert bootstrap_interval(same, ["a", "b", "b"], seed=0) == pytest.approx([2.0, 2.0])
    # video a: ratio 1 over two events, video b: ratio 3; a resample holds 0, 1 or 2 copies of each video
    pairs = np.array([[0.5, 0.5], [0.5, 0.5], [3.0, 1.0]])
    assert bootstrap_interval(pairs, ["a", "a", "b"], seed=0) == pytest.approx([1.0, 3.0])


def test_collision_annotations_read_from_world_shards(tmp_path):
    """The built-in world's shards carry each video's annotation (KEY.json): the probe reads their collisions and
    the object table that maps object ids to the instance ids extraction writes as ``object_ids``."""
    from cjepa.config import WorldConfig
    from cjepa.data.world.generate import generate_split
    from cjepa.eval.probe import _annotations
    from cjepa.eval.vqa.questions import instance_id

    world = WorldConfig(height=48, width=64, num_frames=20, future_frames=8, min_objects=3, max_objects=4, shard_size=2,
                        seed=3)
    generate_split(world, "val", 2, tmp_path, workers=1, progress=False)
    anns = _annotations(tmp_path, "val")  # the shard root: its val split
    assert len(anns) == 2 and all(a["collision"] for a in anns)
    c = anns[0]["collision"][0]
    assert set(c["object_ids"]) <= {o["object_id"] for o in anns[0]["object_property"]} and 0 <= c["frame_id"] < 20
    assert all(instance_id(o) >= 1 for o in anns[0]["object_property"])
    with pytest.raises(ProbeError, match="not found"):
        _annotations(tmp_path / "missing", "val")
