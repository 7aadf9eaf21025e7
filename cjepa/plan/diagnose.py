"""Diagnosis of planning episodes on Push-T: a cost in true state space and failure categories.

:func:`state_cost` scores simulator states against a goal with the geometry of the success rule (position
error over agent and block in units of the 20 px tolerance, wrapped block-angle error in units of pi/9), so a
planner that minimises it to below 1 solves the episode. It is what the simulator oracle is compared against
when the question is whether the embedding the planner's cost lives in is the limit.

:func:`classify_episode` names why an episode failed, from its state trajectory and goal alone:

* ``success``: the rule held at some step;
* ``block_never_touched``: the block never moved although the goal needs it moved;
* ``out_of_budget``: the error was still falling over the last steps and ended within twice the tolerance
  (more steps would probably have solved it);
* otherwise the step that came closest to success (smallest normalised error) is examined, and the
  category is the largest violated part there: ``wrong_angle`` (the block's orientation), ``block_off_goal``
  or ``agent_off_goal`` (which of the two positions carries more of the squared position error).
"""

from __future__ import annotations

import numpy as np

from cjepa.envs.pusht import ANGLE_TOLERANCE, POS_TOLERANCE, angle_error, is_success

CATEGORIES = ("success", "block_never_touched", "out_of_budget", "wrong_angle", "block_off_goal", "agent_off_goal")


def block_placed(states, goal_state) -> np.ndarray:
    """(..., 7) states, (7,) goal -> (...) whether the block alone meets the success rule's tolerances: its
    position within 20 px and its angle within pi/9 of the goal's (strict, as the rule)."""
    s, g = np.asarray(states, np.float64), np.asarray(goal_state, np.float64)
    block = np.linalg.norm(s[..., 2:4] - g[2:4], axis=-1)
    return (block < POS_TOLERANCE) & (angle_error(g[4], s[..., 4]) < ANGLE_TOLERANCE)


def state_cost(states, goal_state, angle_weight: float = 1.0, agent_weight: float = 1.0,
               agent_weight_placed: float | None = None) -> np.ndarray:
    """(..., 7) states, (7,) goal -> (...) squared normalised error: (pos / 20 px)^2 + w (angle / (pi/9))^2,
    the agent's share of the position error scaled by ``agent_weight``, or by ``agent_weight_placed`` at the
    states whose block is placed (:func:`block_placed`; None = ``agent_weight`` everywhere).

    A light agent weight lets the block lead (detours around it are found), but once the block sits on its goal
    the agent's way home then hardly counts; the placed weight restores it exactly there.
    Below 1 (both weights 1) implies both parts of the success rule hold except on the boundary of the angle term.
    """
    s, g = np.asarray(states, np.float64), np.asarray(goal_state, np.float64)
    weight = (agent_weight if agent_weight_placed is None
              else np.where(block_placed(s, g), agent_weight_placed, agent_weight))  # (...) or scalar
    pos = (weight * np.sum((s[..., :2] - g[:2]) ** 2, axis=-1)
           + np.sum((s[..., 2:4] - g[2:4]) ** 2, axis=-1)) / POS_TOLERANCE**2
    ang = (angle_error(g[4], s[..., 4]) / ANGLE_TOLERANCE) ** 2
    return pos + angle_weight * ang


def success_first_cost(states, goal_state, angle_weight: float = 1.0, agent_weight: float = 1.0,
                       agent_weight_placed: float | None = None) -> np.ndarray:
    """:func:`state_cost`, raised above every state that meets the success rule for every state that does not.

    With ``agent_weight`` below 1 the weighted cost can rank a state whose block sits on the goal with the agent
    25 px off (a miss) before one with agent and block 10 px off (a success). A successful state costs less than
    max(1, both agent weights) + angle_weight, so adding that to every other state restores the rule's verdict
    first and leaves the weighted order within each group; CEM keeps its elites by rank, so only the order matters.
    """
    cost = state_cost(states, goal_state, angle_weight, agent_weight, agent_weight_placed)
    heaviest = max(1.0, agent_weight, agent_weight if agent_weight_placed is None else agent_weight_placed)
    return cost + (heaviest + angle_weight) * ~is_success(goal_state, states)


def placed_first(step_costs, placed) -> np.ndarray:
    """(...) step costs and whether each step's block is placed (:func:`block_placed`) -> the costs with every
    step whose block is not placed raised above the dearest placed step of the call.

    A placed weight above the agent weight makes a step that places the block with the agent far dearer than one
    that leaves the block just outside the tolerance, so a planner steers away from placing it; ranking every
    placed step first keeps placing the block the better move and lets the placed weight order the placed steps
    alone. The offset depends on the call's costs, so the order is exact within one call (CEM ranks the candidates
    of one iteration at a time) and costs of different calls are not comparable.
    """
    c, on = np.asarray(step_costs, np.float64), np.asarray(placed, bool)
    if c.shape != on.shape:
        raise ValueError(f"step_costs {c.shape} and placed {on.shape} must have one shape")
    offset = c[on].max() + 1.0 if on.any() else 0.0
    return c + offset * ~on


def best_step_cost(step_costs, final_weight: float = 0.0, mean_weight: float = 0.0) -> np.ndarray:
    """(C, T) per-step costs of C candidate paths -> (C,) each path's cheapest step, + ``final_weight`` x its last
    step's cost, + ``mean_weight`` x its mean over the steps.

    The minimum is what the success rule rewards (success is checked after every env step), but it is flat over
    every path whose cheapest step is the first one (a start just outside the tolerance): then a small
    ``final_weight`` still ranks those paths by where they end, and the whole plan is executed, so where it ends is
    where the next plan starts.
    """
    c = np.asarray(step_costs, np.float64)
    if c.ndim != 2 or c.shape[1] < 1:
        raise ValueError(f"step_costs must be (candidates, steps >= 1), got {c.shape}")
    return c.min(axis=1) + final_weight * c[:, -1] + mean_weight * c.mean(axis=1)


def normalised_errors(states, goal_state) -> dict[str, np.ndarray]:
    """Per step: agent and block position errors (px), angle error (rad), and the success margin
    max(position / 20 px, angle / (pi/9)) (< 1 means success)."""
    s, g = np.asarray(states, np.float64), np.asarray(goal_state, np.float64)
    agent = np.linalg.norm(s[..., 0:2] - g[0:2], axis=-1)
    block = np.linalg.norm(s[..., 2:4] - g[2:4], axis=-1)
    angle = angle_error(g[4], s[..., 4])
    pos = np.sqrt(agent**2 + block**2)
    return {"agent": agent, "block": block, "angle": angle, "position": pos,
            "margin": np.maximum(pos / POS_TOLERANCE, angle / ANGLE_TOLERANCE)}


def classify_episode(states, goal_state, *, touch_px: float = 0.5, touch_rad: float = 0.01, tail: int = 5) -> str:
    """Failure category (one of :data:`CATEGORIES`) of an episode's states (T, 7), start first."""
    s, g = np.asarray(states, np.float64), np.asarray(goal_state, np.float64)
    if s.ndim != 2 or s.shape[1] != 7 or len(s) < 1:
        raise ValueError(f"states must be (T >= 1, 7), got {s.shape}")
    if is_success(g, s).any():
        return "success"
    moved = np.maximum(np.linalg.norm(s[:, 2:4] - s[0, 2:4], axis=-1) / touch_px,
                       angle_error(s[0, 4], s[:, 4]) / touch_rad).max()
    goal_needs_push = (np.linalg.norm(g[2:4] - s[0, 2:4]) >= POS_TOLERANCE / 2
                       or angle_error(g[4], s[0, 4]) >= ANGLE_TOLERANCE / 2)
    if moved < 1 and goal_needs_push:
        return "block_never_touched"
    err = normalised_errors(s, g)
    margin = err["margin"]
    if len(s) > tail and margin[-1] < 2 and margin[-1] < margin[-1 - tail] and np.argmin(margin) >= len(s) - tail:
        return "out_of_budget"
    b = int(np.argmin(margin))
    ang_ratio = err["angle"][b] / ANGLE_TOLERANCE
    pos_ratio = err["position"][b] / POS_TOLERANCE
    if ang_ratio >= pos_ratio:
        return "wrong_angle"
    return "block_off_goal" if err["block"][b] >= err["agent"][b] else "agent_off_goal"


def displacement(start_state, goal_state) -> dict[str, float]:
    """What a start/goal pair asks for: agent and block travel (px) and block rotation (rad, wrapped)."""
    a, g = np.asarray(start_state, np.float64), np.asarray(goal_state, np.float64)
    return {"agent_px": float(np.linalg.norm(g[:2] - a[:2])), "block_px": float(np.linalg.norm(g[2:4] - a[2:4])),
            "block_rad": float(angle_error(g[4], a[4]))}
