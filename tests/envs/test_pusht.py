"""Push-T environment: exact resets, relative PD dynamics, the success rule, geometry, rendering and masks."""

import math

import numpy as np
import pytest

from cjepa.envs.pusht import (
    AGENT_ID,
    AGENT_RADIUS,
    BLOCK_ID,
    DT,
    K_P,
    K_V,
    SUBSTEPS,
    T_BAR,
    T_COG,
    T_STEM,
    PushTEnv,
    PushTError,
    angle_error,
    block_cog,
    is_success,
    sample_state,
    state_to_proprio,
    wrap_angle,
)


@pytest.fixture(scope="module")
def env():
    return PushTEnv(render_size=64)


def test_reset_puts_the_world_exactly_into_the_state(env):
    """Reset to random states (any angle, moving agent): the state read back is the one given."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        s = sample_state(rng)
        s[5:] = rng.uniform(-300, 300, 2)
        obs = env.reset(s)
        np.testing.assert_allclose(obs["state"], s, rtol=0, atol=1e-9)
        np.testing.assert_allclose(obs["proprio"], state_to_proprio(s), rtol=0, atol=1e-9)
        np.testing.assert_allclose(block_cog(s[2:5]), np.array(env.block.local_to_world(tuple(T_COG))), atol=1e-9)


def test_position_first_reset_would_move_the_block(env):
    """Why the angle goes first: pymunk rotates about the centre of gravity, so gym-pusht's position-then-angle
    order leaves the block origin elsewhere (the error our reset avoids)."""
    s = np.array([100.0, 100.0, 250.0, 260.0, 2.0, 0.0, 0.0])
    env.reset(s)
    np.testing.assert_allclose(env.get_state()[2:4], s[2:4], atol=1e-9)
    env._sim._setup()  # a fresh block at angle 0, then the other order, as gym-pusht's reset_to_state does it
    env.block.position = (float(s[2]), float(s[3]))
    env.block.angle = float(s[4])
    assert np.linalg.norm(env.get_state()[2:4] - s[2:4]) > 10.0


def test_reset_then_replay_reproduces_a_contact_trajectory(env):
    """Resetting to a recorded mid-episode state and replaying the actions gives the recorded states (pushes
    included), which is what the evaluation relies on when it starts from dataset states."""
    rng = np.random.default_rng(2)
    obs = env.reset(np.array([256.0, 460.0, 256.0, 300.0, 0.4, 0.0, 0.0]))
    actions = np.array([0.0, -0.5]) + 0.3 * rng.uniform(-1, 1, (40, 2))
    states = [obs["state"]]
    for a in actions:
        states.append(env.step(a)[0]["state"])
    states = np.array(states)
    assert np.linalg.norm(states[-1, 2:4] - states[0, 2:4]) > 20, "the scenario must push the block"
    k = 15
    env.reset(states[k])
    replay = [env.step(a)[0]["state"] for a in actions[k:]]
    np.testing.assert_allclose(np.array(replay), states[k + 1 :], atol=1e-6)


def test_simulate_is_reset_and_step_without_the_bookkeeping(env):
    """The planner's fast replay gives bit-identical states to reset + step, at block boundaries, pushes included."""
    rng = np.random.default_rng(3)
    start = np.array([256.0, 460.0, 256.0, 300.0, 0.4, 5.0, -3.0])
    actions = np.array([0.0, -0.5]) + 0.3 * rng.uniform(-1, 1, (20, 2))
    env.reset(start)
    stepped = np.array([env.step(a)[0]["state"] for a in actions])
    assert np.linalg.norm(stepped[-1, 2:4] - start[2:4]) > 5, "the scenario must push the block"
    np.testing.assert_array_equal(env.simulate(start, actions, every=5), stepped[4::5])
    np.testing.assert_array_equal(env.simulate(start, actions), stepped)
    with pytest.raises(PushTError, match="finite"):
        env.simulate(start, np.full((5, 2), np.nan))


def test_simulate_matches_stepping_through_many_pushes(env):
    """The replay's cheaper path (no contact-count callback, the engine's step called directly) changes no
    trajectory: 40 random starts with the agent driven at the block, pushes, slides and rotations included, give
    bit-identical states to reset + step (which keeps gym-pusht's callback)."""
    rng = np.random.default_rng(4)
    pushed = 0
    for _ in range(40):
        start = sample_state(rng)
        toward = (start[2:4] - start[:2]) / np.linalg.norm(start[2:4] - start[:2])
        actions = 0.6 * toward + 0.5 * rng.normal(size=(25, 2))
        env.reset(start)
        stepped = np.array([env.step(a)[0]["state"] for a in actions])
        np.testing.assert_array_equal(env.simulate(start, actions), stepped)
        pushed += bool(np.abs(stepped[-1, 2:5] - start[2:5]).max() > 1.0)
    assert pushed >= 20, f"only {pushed} of 40 scenarios moved the block"


def test_action_is_a_relative_pd_target(env):
    """Away from the block, one step equals 10 substeps of acc = k_p (pos + 100 a - pos0) - k_v v, dt = 0.01."""
    s = np.array([100.0, 100.0, 300.0, 200.0, 0.0, 30.0, -10.0])
    env.reset(s)
    a = np.array([0.7, -0.2])
    obs, _, info = env.step(a)
    pos, vel = s[:2].copy(), s[5:].copy()
    target = pos + 100.0 * a
    for _ in range(SUBSTEPS):
        vel = vel + (K_P * (target - pos) - K_V * vel) * DT
        pos = pos + vel * DT
    np.testing.assert_allclose(info["target"], target)
    np.testing.assert_allclose(obs["state"][:2], pos, atol=1e-9)
    np.testing.assert_allclose(obs["state"][5:], vel, atol=1e-9)
    np.testing.assert_allclose(obs["state"][2:5], s[2:5], atol=1e-12)  # untouched block stays put


def test_step_reports_success_against_the_goal(env):
    """step() returns the success flag of the reset's goal state (False when there is none)."""
    s = np.array([100.0, 100.0, 300.0, 300.0, 1.0, 0.0, 0.0])
    env.reset(s, goal_state=s)
    assert env.step(np.zeros(2))[1] is True
    env.reset(s)
    assert env.step(np.zeros(2))[1] is False


@pytest.mark.parametrize(
    "delta, angle_goal, angle_state, expected",
    [
        ((19.999, 0, 0, 0), 1.0, 1.0, True),  # just inside the position tolerance
        ((20.0, 0, 0, 0), 1.0, 1.0, False),  # the bound is strict
        ((12.0, 0, 0, 16.0), 1.0, 1.0, False),  # the norm runs over agent AND block: sqrt(144 + 256) = 20
        ((0, 0, 11.0, 11.0), 1.0, 1.0, True),  # 15.56 over the block alone
        ((0, 0, 0, 0), 1.0, 1.0 + math.pi / 9 - 1e-6, True),
        ((0, 0, 0, 0), 1.0, 1.0 + math.pi / 9 + 1e-6, False),
        ((0, 0, 0, 0), 0.05, 2 * math.pi - 0.05, True),  # wraps through 0: 0.1 rad apart
        ((0, 0, 0, 0), 0.05, math.pi + 0.05, False),  # half a turn
        ((0, 0, 0, 0), -0.1, 2 * math.pi + 0.1, True),  # any representative of the angle
    ],
)
def test_success_rule_edges(delta, angle_goal, angle_state, expected):
    """Position error over the 4 position numbers < 20 px, wrapped angle error < pi/9, both strict."""
    goal = np.array([200.0, 200.0, 300.0, 300.0, angle_goal, 0.0, 0.0])
    state = goal.copy()
    state[:4] += np.asarray(delta)
    state[4] = angle_state
    assert bool(is_success(goal, state)) is expected


def test_success_ignores_velocity_and_batches():
    """Velocities differ freely; the rule is vectorised over leading dimensions."""
    goal = np.array([200.0, 200.0, 300.0, 300.0, 0.5, 0.0, 0.0])
    states = np.tile(goal, (3, 1))
    states[:, 5:] = [[500, -500], [0, 0], [10, 10]]
    states[2, 0] += 25
    np.testing.assert_array_equal(is_success(goal, states), [True, True, False])


def test_angle_helpers():
    """wrap_angle lands in (-pi, pi]; angle_error is symmetric and at most pi."""
    a = np.linspace(-10, 10, 101)
    w = wrap_angle(a)
    assert (w > -math.pi).all() and (w <= math.pi).all()
    np.testing.assert_allclose(np.cos(w), np.cos(a), atol=1e-12)
    b = np.random.default_rng(0).uniform(-10, 10, 101)
    np.testing.assert_allclose(angle_error(a, b), angle_error(b, a))
    assert angle_error(a, b).max() <= math.pi + 1e-12


def test_geometry_matches_gym_pusht(env):
    """The constants we compute with are the world gym-pusht builds (guards its pinned private API)."""
    verts = sorted(sorted(map(tuple, np.round([tuple(v) for v in sh.get_vertices()], 6))) for sh in env.block.shapes)
    assert verts == sorted([sorted(map(tuple, T_BAR)), sorted(map(tuple, T_STEM))])
    np.testing.assert_allclose(tuple(env.block.center_of_gravity), T_COG)
    assert env.block.mass == 1.0
    assert [sh.radius for sh in env.agent.shapes] == [AGENT_RADIUS]
    assert env._sim.space.damping == 0.0


def test_render_and_masks(env):
    """Frames are uint8 (size, size, 3) at any size; mask ids sit on the agent (blue) and block (grey) pixels."""
    s = np.array([120.0, 380.0, 300.0, 200.0, 0.7, 0.0, 0.0])
    env.reset(s)
    for size in (64, 96):
        frame, mask = env.render(size), env.render_masks(size)
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
        assert mask.shape == (size, size) and set(np.unique(mask)) == {0, AGENT_ID, BLOCK_ID}
        agent_px = frame[mask == AGENT_ID].astype(float).mean(0)
        block_px = frame[mask == BLOCK_ID].astype(float).mean(0)
        assert agent_px[2] > agent_px[0] + 60  # RoyalBlue
        assert abs(block_px[0] - block_px[2]) < 60 and block_px.mean() < 220  # slate grey, not the white floor
        bg = frame[mask == 0].astype(float).mean(0)
        assert bg.mean() > 200  # mostly white background (with the green goal T)
    area = (env.render_masks(128) == AGENT_ID).sum()
    assert abs(area - math.pi * (AGENT_RADIUS * 128 / 512) ** 2) < 8


def test_goal_frame_rendering(env):
    """reset(render_goal=True) renders the goal state and leaves the world in the start state."""
    start = np.array([100.0, 100.0, 300.0, 300.0, 0.0, 0.0, 0.0])
    goal = np.array([400.0, 400.0, 200.0, 200.0, 1.0, 0.0, 0.0])
    obs = env.reset(start, goal, render_goal=True)
    np.testing.assert_allclose(obs["state"], start)
    assert env.goal_frame.shape == (64, 64, 3)
    assert not np.array_equal(env.goal_frame, env.render())


def test_bad_inputs_are_named(env):
    """Wrong shapes and non-finite numbers fail with the field named."""
    with pytest.raises(PushTError, match="state must be 7 numbers"):
        env.reset(np.zeros(5))
    with pytest.raises(PushTError, match="goal_state has non-finite"):
        env.reset(None, np.array([1, 1, 1, 1, np.nan, 0, 0.0]), seed=0)
    env.reset(seed=0)
    with pytest.raises(PushTError, match="action"):
        env.step(np.array([np.inf, 0.0]))
    with pytest.raises(PushTError, match="render_goal needs"):
        env.reset(seed=0, render_goal=True)


def test_sampled_states_are_in_range_and_free():
    """Random starts follow stable-worldmodel's ranges and never overlap agent and block."""
    from cjepa.envs.pusht import agent_overlaps_block

    rng = np.random.default_rng(0)
    S = np.array([sample_state(rng) for _ in range(50)])
    assert (S[:, :2] >= 50).all() and (S[:, :2] <= 450).all()
    assert (S[:, 2:4] >= 100).all() and (S[:, 2:4] <= 400).all()
    assert (S[:, 4] >= 0).all() and (S[:, 4] < 2 * math.pi).all()
    assert not any(agent_overlaps_block(s) for s in S)
