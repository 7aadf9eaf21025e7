"""Scripted Push-T policies: the expert reaches goal poses; random exploration stays in bounds."""

import numpy as np

from cjepa.data.pusht import sample_goal_pose
from cjepa.envs.pusht import AGENT_RADIUS, T_BAR, T_STEM, PushTEnv, sample_state
from cjepa.envs.pusht_expert import ExpertConfig, RandomExplorer, ScriptedPushExpert, _box_distance, contact_candidates


def test_expert_reaches_random_goal_poses():
    """From random starts to random goal poses, the scripted expert gets the block there (its own 6 px /
    0.06 rad criterion, tighter than the evaluation's) in at least 10 of 12 episodes within 300 steps."""
    env = PushTEnv(64)
    reached, steps = 0, []
    for i in range(12):
        rng = np.random.default_rng([7, i])
        obs = env.reset(sample_state(rng))
        goal = sample_goal_pose(rng)
        expert = ScriptedPushExpert(rng=rng)
        for t in range(300):
            if expert.done(obs["state"], goal):
                reached += 1
                steps.append(t)
                break
            a = expert.act(obs["state"], goal)
            assert a.shape == (2,) and np.all(np.abs(a) <= 1.0)
            obs, _, _ = env.step(a)
    assert reached >= 10, f"expert reached only {reached}/12 goal poses"
    assert np.mean(steps) < 200


def test_contact_candidates_are_touchable():
    """Every candidate contact lets the agent disc touch its face without overlapping the other box."""
    pts, normals = contact_candidates()
    assert len(pts) > 40
    for p, n in zip(pts, normals):
        centre = p - n * AGENT_RADIUS
        d = sorted([_box_distance(centre, T_BAR), _box_distance(centre, T_STEM)])
        assert abs(d[0] - AGENT_RADIUS) < 1e-6 and d[1] >= AGENT_RADIUS + 3.0
        assert abs(np.linalg.norm(n) - 1) < 1e-12


def test_random_explorer_keeps_targets_near_the_block():
    """WeakPolicy: actions in [-1, 1]^2; unsaturated PD targets lie within +-100 px of the block."""
    rng = np.random.default_rng(0)
    pol = RandomExplorer(rng)
    checked = 0
    for _ in range(300):
        s = sample_state(rng)
        a = pol.act(s)
        assert np.all(np.abs(a) <= 1.0)
        if np.all(np.abs(a) < 1.0):
            checked += 1
            assert np.all(np.abs(s[:2] + 100 * a - s[2:4]) <= 100 + 1e-9)
    assert checked > 30


def test_segment_polygon_distance_matches_shapely():
    """The expert's vectorised segment-to-polygon distance equals shapely's on random segments (0 when touching)."""
    from shapely.geometry import LineString, Polygon

    from cjepa.envs.pusht import block_polygons
    from cjepa.envs.pusht_expert import segments_polygon_distance

    rng = np.random.default_rng(3)
    p, q = rng.uniform(0, 512, (200, 2)), rng.uniform(0, 512, (200, 2))
    for poly in block_polygons(256.0, 240.0, 0.8):
        ours = segments_polygon_distance(p, q, poly)
        ref = np.array([LineString([a, b]).distance(Polygon(poly)) for a, b in zip(p, q)])
        np.testing.assert_allclose(ours, ref, atol=1e-7)
        assert (ref == 0).sum() > 10 and (ref > 0).sum() > 10


def test_max_step_slows_the_expert_down():
    """max_step caps how far the PD target may lie from the agent (its speed): a slower expert that still gets
    there. A far-away contact makes the default expert command the full action bound."""
    from cjepa.data.pusht import generate_episode

    state = np.array([60.0, 60.0, 350.0, 350.0, 0.3, 0.0, 0.0])
    goal = np.array([300.0, 300.0, 1.0])
    fast = ScriptedPushExpert(rng=np.random.default_rng(0)).act(state, goal)
    slow = ScriptedPushExpert(ExpertConfig(max_step=30.0), rng=np.random.default_rng(0)).act(state, goal)
    assert np.linalg.norm(fast) > 0.5
    np.testing.assert_allclose(np.linalg.norm(slow), 0.30, atol=1e-9)
    np.testing.assert_allclose(slow / np.linalg.norm(slow), fast / np.linalg.norm(fast), atol=1e-9)  # same heading
    ep_fast = generate_episode("expert", 3, split="val")
    ep_slow = generate_episode("expert", 3, split="val", expert_max_step=30.0)
    assert ep_slow.reached_goal and len(ep_slow.states) > len(ep_fast.states)
    assert np.abs(ep_slow.actions[:-1]).max() <= 0.30 + 1e-9
