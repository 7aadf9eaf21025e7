"""Push-T episodes, state slots and their writers (slot store, video-shard json)."""

import json

import numpy as np
import pytest

from cjepa.data.pusht import (
    BRANCH_EXPLORE,
    BRANCH_NORMAL,
    EXPERT,
    RANDOM,
    StateSlotEmbedding,
    _episode_rng,
    arrays_from_json_meta,
    episode_json_meta,
    generate_branch_episode,
    generate_episode,
    generate_episodes,
    store_action_stats,
    write_state_slot_store,
    write_video_shards,
)
from cjepa.data.slot_store import SlotSplit, read_meta
from cjepa.envs.pusht import PushTEnv, state_to_proprio
from cjepa.envs.pusht_expert import RandomExplorer


def test_episode_arrays_are_consistent_and_deterministic():
    """An episode's states follow from its actions in the simulator; same (seed, split, kind, index) -> same
    episode; frames and masks have one entry per state; the last action row is NaN."""
    ep = generate_episode(RANDOM, 3, split="train", seed=5, random_steps=12, render_size=32, masks=True)
    T = ep.num_frames
    assert T == 13 and ep.states.shape == (T, 7) and ep.actions.shape == (T, 2)
    assert np.isnan(ep.actions[-1]).all() and np.isfinite(ep.actions[:-1]).all()
    assert ep.frames.shape == (T, 32, 32, 3) and ep.frames.dtype == np.uint8
    assert ep.masks.shape == (T, 32, 32)
    np.testing.assert_allclose(ep.proprio, state_to_proprio(ep.states))
    again = generate_episode(RANDOM, 3, split="train", seed=5, random_steps=12)
    np.testing.assert_array_equal(again.states, ep.states)
    other = generate_episode(RANDOM, 3, split="val", seed=5, random_steps=12)
    assert not np.array_equal(other.states, ep.states)
    env = PushTEnv(32)  # replay: the recorded actions reproduce the recorded states
    env.reset(ep.states[0])
    for t in range(T - 1):
        np.testing.assert_allclose(env.step(ep.actions[t])[0]["state"], ep.states[t + 1], atol=1e-6)


def test_expert_episode_reaches_its_goal_pose():
    """Expert episodes stop at the goal pose and record it."""
    ep = generate_episode(EXPERT, 0, seed=1, expert_max_steps=300)
    assert ep.reached_goal and ep.goal_pose.shape == (3,)
    assert ep.num_frames < 301
    assert ep.key == "expert_000000"


def test_state_slot_embedding():
    """Slots are (T, 2 + background, D), fixed across instances, background slots constant, and every slot's
    change follows its own object: moving the agent changes only the agent slot."""
    e1, e2 = StateSlotEmbedding(32, 2), StateSlotEmbedding(32, 2)
    states = np.array([[100, 100, 300, 300, 0.5, 0, 0], [140, 100, 300, 300, 0.5, 50, 0]], float)
    s = e1(states)
    assert s.shape == (2, 4, 32) and s.dtype == np.float32
    np.testing.assert_array_equal(s, e2(states))
    np.testing.assert_allclose(s[0, 2:], s[1, 2:])  # background constant
    np.testing.assert_allclose(s[0, 1], s[1, 1])  # block unchanged
    assert np.abs(s[0, 0] - s[1, 0]).max() > 1e-2  # agent moved
    rot = states.copy()
    rot[1, 4] += 0.3
    r = e1(rot)
    assert np.abs(r[0, 1] - r[1, 1]).max() > 1e-2  # block orientation is visible
    with pytest.raises(ValueError, match=r"\(T, 7\)"):
        e1(np.zeros((3, 5)))
    # other frequencies make another map (a diagnosis option); the default is the stored data format
    low = StateSlotEmbedding(32, 2, cycles=(0.5, 1.0, 2.0))
    assert low.num_features == 4 + 3 * 12 and np.abs(low(states) - s).max() > 1e-2
    np.testing.assert_array_equal(StateSlotEmbedding(32, 2, cycles=(1.0, 2.0, 4.0))(states), s)


def test_state_slot_store_roundtrip_and_resume(tmp_path):
    """The store holds slots plus proprio/action/state extras per episode; re-writing skips stored keys."""
    emb = StateSlotEmbedding(16, 1)
    eps = list(generate_episodes(RANDOM, 2, seed=0, random_steps=8))
    frames = write_state_slot_store(eps, tmp_path, "train", emb)
    assert frames == sum(e.num_frames for e in eps)
    meta = read_meta(tmp_path)
    assert meta["producer"]["encoder"] == "pusht-state-slots" and meta["producer"]["slot_dim"] == 16
    split = SlotSplit(tmp_path, "train")
    assert sorted(split) == [e.key for e in eps]
    for e in eps:
        np.testing.assert_allclose(split[e.key], emb(e.states))
        np.testing.assert_allclose(split.extra(e.key, "state"), e.states, rtol=1e-6)
        np.testing.assert_allclose(split.extra(e.key, "proprio"), e.proprio, rtol=1e-6)
        np.testing.assert_array_equal(np.isnan(split.extra(e.key, "action")), np.isnan(e.actions))
    assert write_state_slot_store(eps, tmp_path, "train", emb) == 0


def test_json_meta_roundtrip():
    """The shard json carries state/proprio/action (T-1 actions) and converts back to store-style arrays."""
    ep = generate_episode(EXPERT, 1, seed=2, expert_max_steps=20)
    meta = json.loads(json.dumps(episode_json_meta(ep)))
    assert len(meta["action"]) == ep.num_frames - 1 and meta["kind"] == EXPERT and "goal_pose" in meta
    assert not {"key", "source", "split", "fps", "num_frames"} & set(meta)  # reserved: the shard writer sets them
    back = arrays_from_json_meta(meta)
    np.testing.assert_allclose(back["state"], ep.states)
    np.testing.assert_allclose(back["action"], ep.actions, rtol=1e-6)
    meta["action"] = meta["action"][:-1]
    with pytest.raises(ValueError, match="expected T-1"):
        arrays_from_json_meta(meta)


def test_video_shards_through_the_writer_contract(tmp_path):
    """Episodes go to ShardWriter.write(key, frames, meta, masks=...); with the real writer when present."""
    ep = generate_episode(RANDOM, 0, seed=0, random_steps=6, render_size=32, masks=True)
    try:
        from cjepa.data.shards import ShardWriter
    except ImportError:
        calls = []

        class Recorder:  # the contract's call shape, where the shard module is not installed
            def write(self, key, frames, meta, masks=None, questions=None):
                calls.append((key, frames.shape, masks.shape, meta["kind"]))

        assert write_video_shards(Recorder(), [ep]) == 1
        assert calls == [(ep.key, (7, 32, 32, 3), (7, 32, 32), RANDOM)]
        return
    writer = ShardWriter(tmp_path, "train", shard_size=4, source="pusht", fps=10)
    assert write_video_shards(writer, [ep]) == 1
    manifest = writer.close()
    assert manifest["num_samples"] == 1 and manifest["num_with_masks"] == manifest["num_with_video_info"] == 1


def test_unrendered_episode_cannot_become_a_video():
    """Writing an episode generated without frames is an error naming the episode."""
    ep = generate_episode(RANDOM, 0, seed=0, random_steps=3)
    with pytest.raises(ValueError, match="random_000000"):
        write_video_shards(object(), [ep])


def _replays(ep):
    env = PushTEnv(32)
    env.reset(ep.states[0])
    for t in range(ep.num_frames - 1):
        np.testing.assert_allclose(env.step(ep.actions[t])[0]["state"], ep.states[t + 1], atol=1e-6)


def test_branch_normal_episode_starts_at_an_expert_state_and_draws_the_declared_normal():
    """A "normal" branch episode starts exactly at a frame of train expert episode index mod expert_count and
    applies i.i.d. raw actions N(mean, std) per dimension, unclipped (as CEM's candidates reach the simulator)."""
    mean, std = np.array([0.3, -0.2]), np.array([0.5, 0.8])
    ep = generate_branch_episode("normal", 4, expert_count=3, steps=3000, action_mean=mean, action_std=std, seed=2)
    assert ep.key == "branch_normal_000004" and ep.kind == BRANCH_NORMAL and ep.meta["source"] == "expert_000001"
    expert = generate_episode(EXPERT, 1, split="train", seed=2)
    np.testing.assert_array_equal(ep.states[0], expert.states[ep.meta["source_frame"]])
    a = ep.actions[:-1].astype(np.float64)
    assert ep.num_frames == 3001 and np.isnan(ep.actions[-1]).all()
    np.testing.assert_allclose(a.mean(0), mean, atol=4 * std.max() / np.sqrt(len(a)))
    np.testing.assert_allclose(a.std(0), std, rtol=0.06)
    assert abs(np.corrcoef(a[:-1, 0], a[1:, 0])[0, 1]) < 0.08  # independent steps
    assert (np.abs(a) > 1).any()  # not clipped to the action box
    _replays(ep)
    again = generate_branch_episode("normal", 4, expert_count=3, steps=3000, action_mean=mean, action_std=std, seed=2)
    np.testing.assert_array_equal(again.states, ep.states)
    with pytest.raises(ValueError, match="needs action_mean"):
        generate_branch_episode("normal", 0, expert_count=1)


def test_branch_explore_episode_is_the_random_explorer_from_an_expert_state():
    """An "explore" branch episode is RandomExplorer's actions (the random episodes' policy) started at the drawn
    expert frame: the same draws from the episode's generator reproduce every action."""
    ep = generate_branch_episode("explore", 2, expert_count=5, steps=30, seed=1)
    assert ep.key == "branch_explore_000002" and ep.kind == BRANCH_EXPLORE and ep.meta["source"] == "expert_000002"
    expert = generate_episode(EXPERT, 2, split="train", seed=1)
    rng = _episode_rng(1, "train", BRANCH_EXPLORE, 2)
    start = int(rng.integers(expert.num_frames))
    assert start == ep.meta["source_frame"]
    np.testing.assert_array_equal(ep.states[0], expert.states[start])
    explorer = RandomExplorer(rng)
    for t in range(30):
        np.testing.assert_allclose(ep.actions[t], explorer.act(ep.states[t]), atol=1e-6)
    assert np.abs(ep.actions[:-1]).max() <= 1.0
    _replays(ep)


def test_store_action_stats_reads_the_named_kinds(tmp_path):
    """The statistics are those of the named kinds' stored actions only (NaN last rows ignored)."""
    emb = StateSlotEmbedding(8, 2)
    eps = [generate_episode(EXPERT, 0, expert_max_steps=20), generate_episode(RANDOM, 0, random_steps=15),
           generate_branch_episode("normal", 0, expert_count=1, steps=10, action_mean=[5.0, 5.0],
                                   action_std=[1.0, 1.0])]
    write_state_slot_store(eps, tmp_path, "train", emb)
    mean, std = store_action_stats(tmp_path, "train")
    a = np.concatenate([eps[0].actions[:-1], eps[1].actions[:-1]]).astype(np.float64)
    np.testing.assert_allclose(mean, a.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, a.std(0), rtol=1e-5)
    with pytest.raises(ValueError, match="no episodes of kinds"):
        store_action_stats(tmp_path, "train", kinds=("nothing",))
