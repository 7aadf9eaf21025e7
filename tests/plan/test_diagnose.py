"""Failure categories and the state-space cost on hand-made Push-T trajectories."""

import math

import numpy as np
import pytest

from cjepa.plan.diagnose import (
    CATEGORIES,
    best_step_cost,
    block_placed,
    classify_episode,
    displacement,
    placed_first,
    state_cost,
    success_first_cost,
)

GOAL = np.array([200.0, 200.0, 300.0, 300.0, 1.0, 0.0, 0.0])


def _hold(state, n=30):
    return np.tile(np.asarray(state, np.float64), (n, 1))


def _approach(start, end, n=30, stop_at=None):
    """Straight-line interpolation start -> end over n steps (held at ``stop_at`` of the way from then on)."""
    t = np.linspace(0, 1, n)[:, None]
    if stop_at is not None:
        t = np.minimum(t, stop_at)
    return np.asarray(start) + t * (np.asarray(end) - np.asarray(start))


def test_success_at_any_step_counts():
    start = GOAL + [40, 0, 60, 0, 0.5, 0, 0]
    traj = np.concatenate([_approach(start, GOAL, 20), _hold(start, 10)])  # reaches, then is pushed away again
    assert classify_episode(traj, GOAL) == "success"


def test_block_never_touched():
    start = GOAL + [0, 0, 60, 0, 0.0, 0, 0]
    traj = _approach(start, start + [-80, 40, 0, 0, 0, 0, 0])  # only the agent moves
    assert classify_episode(traj, GOAL) == "block_never_touched"


def test_untouched_block_is_not_a_failure_cause_when_it_already_sits_at_the_goal():
    start = GOAL + [60, 0, 0, 0, 0.0, 0, 0]
    traj = _hold(start)  # the agent never leaves: 60 px off goal, block on goal
    assert classify_episode(traj, GOAL) == "agent_off_goal"


def test_wrong_angle_block_off_goal_agent_off_goal():
    wrong_angle = _approach(GOAL + [0, 0, 30, 0, 1.2, 0, 0], GOAL + [0, 0, 0, 0, 0.6, 0, 0], stop_at=0.5)
    assert classify_episode(wrong_angle, GOAL) == "wrong_angle"
    block_off = _approach(GOAL + [0, 0, 100, 0, 0.0, 0, 0], GOAL + [0, 0, 40, 0, 0.0, 0, 0], stop_at=0.5)
    assert classify_episode(block_off, GOAL) == "block_off_goal"
    agent_off = _approach(GOAL + [80, 0, 30, 0, 0.0, 0, 0], GOAL + [50, 0, 0, 0, 0.0, 0, 0], stop_at=0.5)
    assert classify_episode(agent_off, GOAL) == "agent_off_goal"


def test_out_of_budget_when_still_closing_in_at_the_end():
    start = GOAL + [0, 0, 150, 0, 0.3, 0, 0]
    near = GOAL + [0, 0, 25, 0, 0.05, 0, 0]  # margin 1.25 at the last step, falling the whole way
    assert classify_episode(_approach(start, near), GOAL) == "out_of_budget"
    # the same end point, reached early and then held, is a block placed off the goal
    assert classify_episode(_approach(start, near, stop_at=0.5), GOAL) == "block_off_goal"


def test_angle_wraps_around():
    start = GOAL.copy()
    start[4] = 1.0 + 2 * math.pi - 0.05  # the same orientation, written another way
    assert classify_episode(_hold(start, 3), GOAL) == "success"


def test_categories_and_bad_input():
    assert set(CATEGORIES) == {"success", "block_never_touched", "out_of_budget", "wrong_angle", "block_off_goal",
                               "agent_off_goal"}
    with pytest.raises(ValueError, match="states must be"):
        classify_episode(np.zeros((4, 5)), GOAL)


def test_state_cost_follows_the_success_geometry():
    s = np.stack([GOAL, GOAL + [20, 0, 0, 0, 0, 0, 0], GOAL + [0, 0, 0, 0, math.pi / 9, 0, 0],
                  GOAL + [0, 0, 0, 0, 2 * math.pi, 0, 0], GOAL + [0, 0, 0, 0, 0, 50, 50]])
    np.testing.assert_allclose(state_cost(s, GOAL), [0.0, 1.0, 1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(state_cost(s[2], GOAL, angle_weight=4.0), 4.0)


def test_state_cost_agent_weight_scales_the_agent_share_only():
    """agent_weight multiplies the agent's squared position error and leaves the block's and the angle's alone."""
    s = np.stack([GOAL + [20, 0, 0, 0, 0, 0, 0], GOAL + [0, 0, 20, 0, 0, 0, 0], GOAL + [0, 0, 0, 0, math.pi / 9, 0, 0]])
    np.testing.assert_allclose(state_cost(s, GOAL, agent_weight=0.25), [0.25, 1.0, 1.0], atol=1e-12)


def test_block_placed_is_the_success_rule_on_the_block_alone():
    """Strict bounds, as the rule: 20 px and pi/9; the agent's error does not enter."""
    s = np.stack([GOAL + [300, 0, 19.99, 0, 0, 0, 0], GOAL + [0, 0, 20, 0, 0, 0, 0],
                  GOAL + [0, 0, 0, 0, math.pi / 9 - 1e-6, 0, 0], GOAL + [0, 0, 0, 0, math.pi / 9 + 1e-6, 0, 0],
                  GOAL + [0, 0, 12, -12, 2 * math.pi - 0.1, 0, 0], GOAL + [0, 0, 12, -16.01, 0, 0, 0]])
    assert block_placed(s, GOAL).tolist() == [True, False, True, False, True, False]


def _placing_path(steps=41):
    """The block slides straight onto its goal from 40 px off (1 px a step) while the agent waits 100 px off
    its goal: the block enters the 20 px tolerance at step 21 (19 px)."""
    path = np.tile(GOAL + [100, 0, 0, 0, 0, 0, 0], (steps, 1))
    path[:, 2] += np.arange(40, 40 - steps, -1)
    return path


def test_placed_agent_weight_switches_where_the_block_enters_the_tolerance():
    path = _placing_path()  # (41, 7)
    light, full = state_cost(path, GOAL, agent_weight=0.1), state_cost(path, GOAL, agent_weight=1.0)
    switched = state_cost(path, GOAL, agent_weight=0.1, agent_weight_placed=1.0)
    entered = int(np.argmax(np.abs(path[:, 2] - GOAL[2]) < 20))
    assert entered == 21
    np.testing.assert_array_equal(switched[:entered], light[:entered])
    np.testing.assert_array_equal(switched[entered:], full[entered:])
    # the agent's 100 px count 25 at weight 1: once placed, the path is scored by bringing the agent home
    assert switched[entered] - switched[entered - 1] == pytest.approx(0.9 * 100**2 / 400 + (19**2 - 20**2) / 400)
    # the angle alone can hold the switch back: the same path 0.4 rad off never counts the agent fully
    turned = path + [0, 0, 0, 0, 0.4, 0, 0]
    np.testing.assert_array_equal(state_cost(turned, GOAL, agent_weight=0.1, agent_weight_placed=1.0),
                                  state_cost(turned, GOAL, agent_weight=0.1))


def test_placed_agent_weight_unset_is_the_old_cost():
    rng = np.random.default_rng(1)
    s = GOAL + rng.normal(0, 25, size=(3, 30, 7)) * [1, 1, 1, 1, 0.02, 0, 0]  # some blocks placed, some not
    assert 0 < block_placed(s, GOAL).sum() < s.shape[0] * s.shape[1]
    for w in (0.1, 0.25, 1.0):
        plain = state_cost(s, GOAL, agent_weight=w)
        np.testing.assert_array_equal(state_cost(s, GOAL, agent_weight=w, agent_weight_placed=None), plain)
        np.testing.assert_array_equal(state_cost(s, GOAL, agent_weight=w, agent_weight_placed=w), plain)
        np.testing.assert_array_equal(success_first_cost(s, GOAL, agent_weight=w, agent_weight_placed=None),
                                      success_first_cost(s, GOAL, agent_weight=w))


def test_placed_first_ranks_every_placed_step_before_every_other():
    """The switch alone makes placing the block with the agent 100 px off dearer than stopping the block 21 px
    short; ranked placed-first, placing wins and the placed weight orders the placed steps among themselves."""
    placed_far = GOAL + [100, 0, 0, 0, 0, 0, 0]  # 25 at weight 1
    placed_near = GOAL + [30, 0, 5, 0, 0, 0, 0]  # 2.31 at weight 1
    short = GOAL + [100, 0, 21, 0, 0, 0, 0]  # block not placed: 2.5 + 1.1 at weight 0.1
    far = GOAL + [150, 0, 60, 0, 0, 0, 0]
    s = np.stack([placed_far, placed_near, short, far])
    switched = state_cost(s, GOAL, agent_weight=0.1, agent_weight_placed=1.0)
    assert switched[2] < switched[0]
    ranked = placed_first(switched, block_placed(s, GOAL))
    assert list(np.argsort(ranked)) == [1, 0, 2, 3]
    np.testing.assert_array_equal(ranked[:2], switched[:2])  # placed steps keep their cost
    assert ranked[3] - ranked[2] == pytest.approx(switched[3] - switched[2])  # the others keep order and gaps
    # per candidate path: the offset is the call's, so a path with any placed step beats every path without
    paths = np.stack([np.stack([far, placed_far]), np.stack([short, short])])  # (2, 2, 7)
    per_step = placed_first(state_cost(paths, GOAL, agent_weight=0.1, agent_weight_placed=1.0),
                            block_placed(paths, GOAL))
    best = best_step_cost(per_step)
    assert best[0] < best[1]
    nothing = np.stack([short, far])
    np.testing.assert_array_equal(placed_first(state_cost(nothing, GOAL), block_placed(nothing, GOAL)),
                                  state_cost(nothing, GOAL))
    with pytest.raises(ValueError, match="one shape"):
        placed_first(switched, block_placed(s, GOAL)[:2])


def _plateau_paths(steps=25):
    """Four planned paths (4, steps, 7) from a start whose block sits 24 px off the goal (cost 1.44, just outside
    the tolerance), agent on its goal. Every path's cheapest step is its first, where nothing has moved yet:
    the agent holds still; wanders 60 px off and back to 10 px; runs 150 px away; pushes the block 30 px further
    off. Their last steps rank hold < wander < push away < run away."""
    start = GOAL + [0, 0, 24, 0, 0, 0, 0]
    hold = _hold(start, steps)
    wander = np.concatenate([_approach(start, start + [60, 0, 0, 0, 0, 0, 0], steps // 2),
                             _approach(start + [60, 0, 0, 0, 0, 0, 0], start + [10, 0, 0, 0, 0, 0, 0],
                                       steps - steps // 2)])
    run = _approach(start, start + [0, 150, 0, 0, 0, 0, 0], steps)
    push = _approach(start, start + [0, 0, 30, 0, 0, 0, 0], steps)
    return np.stack([hold, wander, run, push])


def test_best_step_cost_breaks_the_plateau_tie_by_the_last_step():
    costs = state_cost(_plateau_paths(), GOAL)  # (4 candidates, 25 steps)
    assert (costs.argmin(axis=1) == 0).all() and np.allclose(costs[:, 0], 1.44)
    plain = best_step_cost(costs)
    assert np.allclose(plain, 1.44)  # the minimum alone cannot tell the four apart
    tied = best_step_cost(costs, final_weight=0.01)
    np.testing.assert_allclose(tied, 1.44 + 0.01 * costs[:, -1], rtol=1e-12)
    assert list(np.argsort(tied)) == [0, 1, 3, 2]  # hold, wander back, push away, run away
    # a small weight stays a tie-break: a path through the goal still beats holding at the start
    through = _approach(GOAL + [0, 0, 24, 0, 0, 0, 0], GOAL + [0, 0, -40, 0, 0, 0, 0], 25)  # passes the goal
    both = best_step_cost(state_cost(np.stack([through, _plateau_paths()[0]]), GOAL), final_weight=0.01)
    assert both[0] < both[1]


def test_best_step_cost_with_no_weights_is_the_minimum_over_steps():
    rng = np.random.default_rng(0)
    costs = rng.uniform(0, 5, size=(6, 25))  # more steps than candidates: a minimum over the wrong axis fails
    np.testing.assert_array_equal(best_step_cost(costs), costs.min(axis=1))
    np.testing.assert_allclose(best_step_cost(costs, mean_weight=0.1), costs.min(axis=1) + 0.1 * costs.mean(axis=1))
    with pytest.raises(ValueError, match="candidates, steps"):
        best_step_cost(costs[0])


def test_success_first_cost_ranks_every_success_before_every_miss():
    hit = GOAL + [10, 0, 0, 10, 0, 0, 0]  # agent and block 10 px off: position error 14 px, a success
    near = GOAL + [25, 0, 0, 0, 0, 0, 0]  # block on the goal, agent 25 px off: a miss
    corner = GOAL + [0, 0, 19.9, 0, math.pi / 9 - 1e-3, 0, 0]  # a success at the rule's corner (state cost ~1.98)
    far = GOAL + [200, 0, 0, 0, 0, 0, 0]
    s = np.stack([hit, near, corner, far])
    weighted = state_cost(s, GOAL, agent_weight=0.1)
    assert weighted[1] < weighted[0]  # the agent-weighted cost prefers the miss
    ranked = success_first_cost(s, GOAL, agent_weight=0.1)
    assert list(np.argsort(ranked)) == [0, 2, 1, 3]
    np.testing.assert_allclose(ranked[[0, 2]], weighted[[0, 2]])  # successes keep their cost
    assert ranked[3] - ranked[1] == pytest.approx(weighted[3] - weighted[1])  # misses keep their order and gaps


def test_success_first_cost_keeps_successes_first_under_a_heavy_placed_weight():
    """A placed weight above 1 raises the successes' cost too (their block is always placed): the offset follows
    it, so a success near the rule's corner still beats a miss whose block is just off."""
    hit = GOAL + [19, 0, 0, 0, 0.33, 0, 0]  # position 19 px, angle 0.33 rad: a success, state cost 4.5 at w=4
    miss = GOAL + [0, 0, 21, 0, 0, 0, 0]  # block 21 px off: not placed, agent on its goal (cost 1.1)
    s = np.stack([hit, miss])
    weighted = state_cost(s, GOAL, agent_weight=0.1, agent_weight_placed=4.0)
    assert weighted[0] > weighted[1] + 2.0  # more than the offset max(1, agent_weight) + 1 would add to the miss
    ranked = success_first_cost(s, GOAL, agent_weight=0.1, agent_weight_placed=4.0)
    assert ranked[0] < ranked[1]


def test_displacement():
    d = displacement(GOAL + [3, 4, 0, 0, 2 * math.pi + 0.5, 0, 0], GOAL)
    assert d == pytest.approx({"agent_px": 5.0, "block_px": 0.0, "block_rad": 0.5})
