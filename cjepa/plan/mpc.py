"""Receding-horizon control with CEM in a world model's latent space (stable-worldmodel's WorldModelPolicy).

When its action buffer is empty the planner encodes what it has seen, solves for ``horizon`` action blocks,
keeps the first ``receding_horizon`` of them (de-normalised and split into ``action_block`` env actions
each), and executes them one per env step; the unexecuted blocks warm-start the next solve. With the
protocol's horizon = receding horizon = 5 blocks of 5 steps, that is: plan 25 steps, run them open loop,
replan once within the 50-step budget.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Optional

import numpy as np
import torch

from cjepa.plan.cem import CEM, CEMResult
from cjepa.plan.world_model import Goal, Observation, PlanningWorldModel


class EpisodeHistory:
    """Per-step record of an episode as the planner may see it: states, proprio, executed actions, frames."""

    def __init__(self):
        self.states: list[np.ndarray] = []
        self.proprio: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []  # actions[t] was executed after frame t
        self.frames: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []  # instance masks of the frames, where a conditional encoder reads them

    def add_frame(self, obs: dict, frame: Optional[np.ndarray] = None, masks: Optional[np.ndarray] = None) -> None:
        self.states.append(np.asarray(obs["state"], np.float64))
        self.proprio.append(np.asarray(obs["proprio"], np.float64))
        if frame is not None:
            self.frames.append(frame)
        if masks is not None:
            self.masks.append(masks)

    def add_action(self, action: np.ndarray) -> None:
        self.actions.append(np.asarray(action, np.float64))

    def observation(self, num_frames: int, stride: int) -> Observation:
        """The last ``num_frames`` frames at ``stride`` steps (fewer if the episode is younger) and the executed
        action chunks between them."""
        t = len(self.states) - 1
        idx = [t - k * stride for k in range(num_frames - 1, -1, -1) if t - k * stride >= 0]
        acts = None
        if len(idx) > 1:
            acts = np.stack([np.concatenate(self.actions[i : i + stride]) for i in idx[:-1]])
        return Observation(
            proprio=np.stack([self.proprio[i] for i in idx]),
            state=np.stack([self.states[i] for i in idx]),
            pixels=np.stack([self.frames[i] for i in idx]) if len(self.frames) == len(self.states) else None,
            actions=acts,
            masks=np.stack([self.masks[i] for i in idx]) if len(self.masks) == len(self.states) else None,
        )


class MPCPlanner:
    def __init__(self, world_model: PlanningWorldModel, cem: CEM, *, horizon: int, receding_horizon: int,
                 history_obs: int = 1, warm_start: bool = True, clip_actions: bool = False):
        if not isinstance(world_model, PlanningWorldModel):
            raise TypeError(f"{type(world_model).__name__} does not implement PlanningWorldModel")
        self.wm, self.cem = world_model, cem
        self.horizon, self.receding_horizon = horizon, receding_horizon
        self.history_obs, self.warm_start, self.clip_actions = history_obs, warm_start, clip_actions
        self.plan_seconds: list[float] = []
        # The observation and model-space plan (H, A) of the latest solve, for views of what the model predicted
        # (cjepa.plan.video); read-only for callers.
        self.last_solve: Optional[tuple[Observation, torch.Tensor]] = None
        self.last_result: Optional[CEMResult] = None  # the latest solve's CEMResult (its per-iteration history)
        self.reset(None)

    def reset(self, goal: Optional[Goal]) -> None:
        self._goal = None if goal is None else self.wm.encode_goal(goal)
        self._buffer: deque[np.ndarray] = deque()
        self._next_init: Optional[torch.Tensor] = None

    def plan(self, obs: Observation):
        """One CEM solve from ``obs``; returns the CEMResult (plan in model space)."""
        if self._goal is None:
            raise RuntimeError("MPCPlanner.reset(goal) must be called before planning")
        nodes = self.wm.encode(obs)
        goal = self._goal
        cost_fn = lambda cand: self.wm.cost(self.wm.rollout(nodes, cand), goal)  # noqa: E731
        result = self.cem.solve(cost_fn, self.horizon, self.wm.action_dim, self._next_init)
        self.plan_seconds.append(result.seconds)
        return result

    def act(self, history: EpisodeHistory) -> np.ndarray:
        if not self._buffer:
            t0 = time.perf_counter()
            obs = history.observation(self.history_obs, self.wm.action_block)
            result = self.plan(obs)
            self.last_solve, self.last_result = (obs, result.mean), result
            keep = result.mean[: self.receding_horizon]
            self._next_init = result.mean[self.receding_horizon :] if self.warm_start else None
            self._buffer.extend(self.wm.blocks_to_env(keep))
            self.plan_seconds[-1] = time.perf_counter() - t0  # include encoding
        action = self._buffer.popleft()
        return np.clip(action, -1.0, 1.0) if self.clip_actions else action
