"""Receding-horizon planning: history windows, replanning cadence, and solving a task with a true model."""

import numpy as np
import pytest
import torch

from cjepa.envs.pusht import PushTEnv, is_success, position_error, state_to_proprio
from cjepa.plan.cem import CEM
from cjepa.plan.evaluate import run_episode
from cjepa.plan.mpc import EpisodeHistory, MPCPlanner
from cjepa.plan.video import label_height


class SimulatorWorldModel:
    """A non-slot world model that predicts with the simulator itself (structurally a PlanningWorldModel):
    'nodes' are raw states, rollouts replay candidate actions in a PushTEnv, cost = position error."""

    action_block = 5
    action_dim = 10

    def __init__(self):
        self.env = PushTEnv(32)

    def encode(self, obs):
        return torch.from_numpy(np.asarray(obs.state, np.float64))  # (T_obs, 7)

    def encode_goal(self, goal):
        return torch.from_numpy(np.asarray(goal.state, np.float64))

    def blocks_to_env(self, blocks):
        return blocks.detach().double().cpu().numpy().reshape(-1, 2)

    def rollout(self, nodes, actions):
        out = []
        for cand in actions:
            self.env.reset(nodes[-1].numpy())
            traj = [nodes[-1].numpy()]
            for a in self.blocks_to_env(cand):
                traj.append(self.env.step(np.clip(a, -1, 1))[0]["state"])
            out.append(np.stack(traj))
        return torch.from_numpy(np.stack(out))

    def cost(self, trajectories, goal):
        return torch.from_numpy(position_error(goal.numpy(), trajectories[:, -1].numpy()))


def test_history_observation_windows():
    """The planner sees the last frames at stride action_block and the action chunks executed between them."""
    h = EpisodeHistory()
    for t in range(13):
        h.add_frame({"state": np.full(7, float(t)), "proprio": np.full(4, float(t))})
        if t < 12:
            h.add_action(np.array([t, -t], float))
    obs = h.observation(3, 5)
    np.testing.assert_array_equal(obs.state[:, 0], [2, 7, 12])
    assert obs.actions.shape == (2, 10)
    np.testing.assert_array_equal(obs.actions[0].reshape(5, 2)[:, 0], [2, 3, 4, 5, 6])
    young = h.observation(3, 10)
    np.testing.assert_array_equal(young.state[:, 0], [2, 12])  # only what exists
    assert h.observation(1, 5).actions is None


def test_planner_requires_the_protocol():
    """Objects that are not world models are refused up front."""
    with pytest.raises(TypeError, match="PlanningWorldModel"):
        MPCPlanner(object(), CEM(num_samples=4, topk=2, iterations=1), horizon=1, receding_horizon=1)


def test_planning_with_a_true_model_reaches_the_goal():
    """CEM-MPC with the simulator as its model moves the agent to a goal 60 px away: the action plumbing
    (block layout, de-normalisation, receding execution) is right end to end."""
    wm = SimulatorWorldModel()
    planner = MPCPlanner(wm, CEM(num_samples=48, topk=6, iterations=4, seed=0), horizon=2, receding_horizon=1)
    start = np.array([150.0, 150.0, 350.0, 350.0, 0.0, 0.0, 0.0])
    goal = start.copy()
    goal[:2] += [60.0, 30.0]
    res = run_episode(PushTEnv(32), planner, start, goal, budget=20)
    assert res.success, f"final position error {res.final_position_error:.1f} px"
    assert res.plans == -(-res.steps // 5)  # one plan per executed block


def test_slot_world_model_episode_runs(world_model):
    """A (random-weight) slot world model plans a whole budget: one plan per receding horizon, finite
    clipped actions, and the result's success flag agrees with the rule on the final state."""
    planner = MPCPlanner(world_model, CEM(num_samples=12, topk=3, iterations=2, seed=0), horizon=2,
                         receding_horizon=2, history_obs=3, clip_actions=True)
    start = np.array([150.0, 150.0, 300.0, 300.0, 0.5, 0.0, 0.0])
    goal = start + np.array([40.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    env = PushTEnv(32)
    res = run_episode(env, planner, start, goal, budget=25, record=True)
    assert res.plans == 3 and res.steps == 25 or res.success
    assert res.frames.shape == (res.steps + 1, 32 + label_height(32), 96, 3)  # observation, goal, predicted plan end
    state = env.get_state()
    assert bool(is_success(goal, state)) == res.success
    assert res.final_position_error == pytest.approx(float(position_error(goal, state)))
    assert len(planner.plan_seconds) == res.plans and all(s > 0 for s in planner.plan_seconds)
    np.testing.assert_allclose(state_to_proprio(state)[:2], state[:2])


def replayed_state(world_model, start: np.ndarray, blocks: torch.Tensor) -> np.ndarray:
    """(7,) state a fresh environment reaches from ``start`` executing one candidate's action blocks (H, A)."""
    env = PushTEnv(32)
    env.reset(start)
    for a in world_model.blocks_to_env(blocks):
        env.step(a)
    return env.get_state()


def test_simulator_world_model_is_the_true_dynamics(world_model):
    """The oracle's rollout embeds the simulated states: its final frame equals the encoding of the state the
    environment reaches with the same actions, and it conforms to the planner protocol."""
    from cjepa.plan.world_model import Observation, PlanningWorldModel, SimulatorWorldModel

    oracle = SimulatorWorldModel(world_model)
    assert isinstance(oracle, PlanningWorldModel)
    start = np.array([150.0, 150.0, 300.0, 300.0, 0.5, 0.0, 0.0])
    nodes = oracle.encode(Observation(proprio=state_to_proprio(start[None]), state=start[None]))
    cand = torch.randn(3, 2, 10, generator=torch.Generator().manual_seed(0))
    traj = oracle.rollout(nodes, cand)
    assert traj.shape == (3, 3, 6, 16)
    s = replayed_state(world_model, start, cand[1])
    expect = world_model.encode(Observation(proprio=state_to_proprio(s[None]), state=s[None]))
    torch.testing.assert_close(traj[1, -1, :5], expect[0, :5])


def test_simulator_world_model_in_state_space(world_model):
    """cost_space="state": nodes are the raw states, the rollout ends in the state the environment reaches, and
    the cost is the success rule's geometry (0 at the goal, 1 at 20 px)."""
    from cjepa.plan.diagnose import state_cost
    from cjepa.plan.world_model import Goal, Observation, SimulatorWorldModel

    oracle = SimulatorWorldModel(world_model, cost_space="state")
    start = np.array([150.0, 150.0, 300.0, 300.0, 0.5, 0.0, 0.0])
    nodes = oracle.encode(Observation(proprio=state_to_proprio(start[None]), state=start[None]))
    assert nodes.shape == (1, 1, 7)
    cand = torch.randn(4, 2, 10, generator=torch.Generator().manual_seed(1))
    traj = oracle.rollout(nodes, cand)
    assert traj.shape == (4, 3, 1, 7)
    np.testing.assert_array_equal(traj[2, -1, 0].numpy(), replayed_state(world_model, start, cand[2]))
    goal_state = traj[2, -1, 0].numpy().copy()
    goal = oracle.encode_goal(Goal(proprio=state_to_proprio(goal_state), state=goal_state))
    costs = oracle.cost(traj, goal)
    assert costs[2] == 0.0
    np.testing.assert_allclose(costs.numpy(), state_cost(traj[:, -1, 0].numpy(), goal_state), rtol=1e-6)
    with pytest.raises(ValueError, match="cost_space"):
        SimulatorWorldModel(world_model, cost_space="pixels")


def test_state_path_cost_scores_the_best_env_step_of_the_plan(world_model):
    """cost_space="state_path": one node per env step (each the state the environment is in after that step),
    and a candidate costs what its best planned step costs; the observed frames are not scored."""
    from cjepa.plan.diagnose import state_cost
    from cjepa.plan.world_model import Goal, Observation, SimulatorWorldModel

    oracle = SimulatorWorldModel(world_model, cost_space="state_path")
    before = np.array([140.0, 150.0, 300.0, 300.0, 0.5, 0.0, 0.0])
    start = np.array([150.0, 150.0, 300.0, 300.0, 0.5, 20.0, 0.0])
    observed = np.stack([before, start])
    nodes = oracle.encode(Observation(proprio=state_to_proprio(observed), state=observed))
    cand = torch.randn(4, 2, 10, generator=torch.Generator().manual_seed(2))
    traj = oracle.rollout(nodes, cand)
    assert traj.shape == (4, 1 + 1 + 2 * 5, 1, 7)  # observed frame before the start, start, 10 env steps
    env = PushTEnv(32)
    env.reset(start)
    for t, a in enumerate(world_model.blocks_to_env(cand[3])):
        env.step(a)
        np.testing.assert_array_equal(traj[3, 2 + t, 0].numpy(), env.get_state())
    goal_state = traj[3, 4, 0].numpy().copy()  # candidate 3 passes through it after 3 of its 10 steps
    goal = oracle.encode_goal(Goal(proprio=state_to_proprio(goal_state), state=goal_state))
    costs = oracle.cost(traj, goal).numpy()
    assert costs[3] == 0.0
    np.testing.assert_allclose(costs, state_cost(traj[:, 2:, 0].numpy(), goal_state).min(axis=1), rtol=1e-6)
    assert SimulatorWorldModel(world_model, cost_space="state").cost(traj, goal)[3] > 0  # final frame only
    weighted = SimulatorWorldModel(world_model, cost_space="state_path", final_weight=0.5)
    weighted.encode(Observation(proprio=state_to_proprio(observed), state=observed))
    np.testing.assert_allclose(weighted.cost(traj, goal).numpy(),
                               costs + 0.5 * state_cost(traj[:, -1, 0].numpy(), goal_state), rtol=1e-6)
    # mean_weight adds the mean over the planned steps; agent_weight scales the agent's share in every step
    steps = traj[:, 2:, 0].numpy()
    blended = SimulatorWorldModel(world_model, cost_space="state_path", mean_weight=0.1, agent_weight=0.25)
    blended.encode(Observation(proprio=state_to_proprio(observed), state=observed))
    per_step = state_cost(steps, goal_state, agent_weight=0.25)
    np.testing.assert_allclose(blended.cost(traj, goal).numpy(), per_step.min(axis=1) + 0.1 * per_step.mean(axis=1),
                               rtol=1e-6)
    assert not np.allclose(per_step, state_cost(steps, goal_state))  # the agent weight changed the scores
    # The observed frames are not the plan's: a goal at the frame before the start is not reached by planning.
    at_before = oracle.encode_goal(Goal(proprio=state_to_proprio(before), state=before))
    assert (oracle.cost(traj, at_before).numpy() > 0).all()
