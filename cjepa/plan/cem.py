"""Cross-entropy method over action sequences (stable-worldmodel's CEMSolver as C-JEPA configures it).

Per solve: mean mu (H, A) = warm start padded with zeros, std sigma = var_scale (a standard deviation,
although the original calls it ``var``). Each iteration samples ``num_samples`` sequences mu + sigma * eps
from a dedicated generator, overwrites sample 0 with mu, scores all of them with one ``cost_fn`` call, and
refits mu, sigma to the ``topk`` cheapest (no smoothing, no clipping: the spec's section 3.2). Actions live
in the world model's normalised action space; the caller maps them back to the environment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch


@dataclass
class CEMResult:
    mean: torch.Tensor  # (H, A) the plan
    std: torch.Tensor  # (H, A) final elite spread
    elite_cost: float  # mean cost of the last iteration's elites
    cost_history: list[float] = field(default_factory=list)  # elite mean cost per iteration
    best_history: list[float] = field(default_factory=list)  # cheapest candidate's cost per iteration
    std_history: list[float] = field(default_factory=list)  # mean elite std per iteration (collapse diagnosis)
    seconds: float = 0.0


class CEM:
    def __init__(self, *, num_samples: int = 300, topk: int = 30, iterations: int = 30, var_scale: float = 1.0,
                 seed: int = 0, device="cpu"):
        if not 2 <= topk <= num_samples:
            raise ValueError(f"CEM needs 2 <= topk ({topk}) <= num_samples ({num_samples})")
        if iterations < 1:
            raise ValueError("CEM needs at least one iteration")
        self.num_samples, self.topk, self.iterations, self.var_scale = num_samples, topk, iterations, var_scale
        self.device = torch.device(device)
        # One stream per solver, continued across solves (the original seeds its generator once per run).
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    @classmethod
    def from_config(cls, plan_cfg, seed: int, device) -> "CEM":
        return cls(num_samples=plan_cfg.num_samples, topk=plan_cfg.topk, iterations=plan_cfg.iterations,
                   var_scale=plan_cfg.var_scale, seed=seed, device=device)

    @torch.no_grad()
    def solve(self, cost_fn: Callable[[torch.Tensor], torch.Tensor], horizon: int, action_dim: int,
              init_mean: Optional[torch.Tensor] = None) -> CEMResult:
        """Minimise ``cost_fn(candidates (N, H, A)) -> (N,)`` over action sequences of ``horizon`` blocks."""
        t0 = time.perf_counter()
        mean = torch.zeros(horizon, action_dim, device=self.device)
        if init_mean is not None and len(init_mean):
            k = min(len(init_mean), horizon)
            mean[:k] = init_mean[:k].to(self.device, mean.dtype)
        std = torch.full((horizon, action_dim), float(self.var_scale), device=self.device)
        history: list[float] = []
        best: list[float] = []
        spread: list[float] = []
        elite_cost = float("nan")
        for _ in range(self.iterations):
            eps = torch.randn(self.num_samples, horizon, action_dim, generator=self.generator, device=self.device)
            candidates = mean + std * eps  # (N, H, A)
            candidates[0] = mean
            costs = cost_fn(candidates)
            if costs.shape != (self.num_samples,):
                raise ValueError(f"cost_fn must return ({self.num_samples},) costs, got {tuple(costs.shape)}")
            if not torch.isfinite(costs).all():
                raise FloatingPointError(f"CEM: {int((~torch.isfinite(costs)).sum())} candidate costs are NaN/inf")
            top_costs, top_idx = torch.topk(costs, self.topk, largest=False)
            elites = candidates[top_idx]  # (K, H, A)
            mean, std = elites.mean(0), elites.std(0)
            elite_cost = float(top_costs.mean())
            history.append(elite_cost)
            best.append(float(top_costs[0]))
            spread.append(float(std.mean()))
        return CEMResult(mean=mean, std=std, elite_cost=elite_cost, cost_history=history, best_history=best,
                         std_history=spread, seconds=time.perf_counter() - t0)
