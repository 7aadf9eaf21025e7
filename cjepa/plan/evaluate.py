"""The Push-T planning evaluation of spec section 3.4, on held-out expert episodes.

Protocol per seed: from the expert episodes of the evaluation split, every frame that has a frame
``goal_offset`` (25) steps later in the same episode is a candidate start; ``episodes`` (50) distinct starts are
drawn with ``np.random.default_rng(seed)``; the goal is the state 25 steps later. The environment is reset
exactly to the start state, the MPC planner acts for at most ``budget`` (50) steps, and the episode counts as
solved if the success rule (position error over agent and block < 20 px and wrapped angle error < pi/9) holds
after any step. Reported: success rate per seed, its mean, standard deviation and 95 % t-interval over seeds
(0, 1, 2), the cumulative success curve (percent solved within k steps, k = 1 .. budget, averaged over
seeds), and planning time per plan and per episode. Differences from the original, on purpose: episodes come from a
held-out split, not the training split (Q12), and the draw covers every valid start row (the original's
``choice(len(rows) - 1)`` never picks the last one). Not a protocol matter: CEM draws from one stream per episode
(:func:`episode_seed`), where the original continues one stream over a run, so that episodes can run in parallel
processes (``plan.workers``) with the same results as one after another.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from cjepa.data.slot_store import SlotSplit, read_meta
from cjepa.envs.pusht import PushTEnv, angle_error, position_error, state_to_proprio
from cjepa.plan.diagnose import classify_episode
from cjepa.plan.mpc import EpisodeHistory, MPCPlanner
from cjepa.plan.video import episode_frame, prediction_view, save_video
from cjepa.plan.world_model import Goal
from cjepa.utils.stats import MeanCI, mean_ci


def load_expert_episodes(store_root: str, split: str) -> dict[str, np.ndarray]:
    """{key: states (T, 7)} of the expert episodes of a Push-T state-slot store split."""
    read_meta(store_root)
    videos = SlotSplit(store_root, split)
    if "state" not in videos.extras:
        raise ValueError(f"{store_root}/{split}: the store has no 'state' extra (not made by `cjepa pusht`?)")
    out = {k: np.asarray(videos.extra(k, "state"), np.float64) for k in videos if k.startswith("expert")}
    if not out:
        raise ValueError(f"{store_root}/{split}: no expert episodes (keys starting with 'expert')")
    return out


def sample_start_goal_pairs(episodes: Mapping[str, np.ndarray], num: int, seed: int,
                            goal_offset: int) -> list[tuple[str, int]]:
    """``num`` distinct (episode key, start step) rows whose goal row start + goal_offset exists."""
    rows = [(k, s) for k in sorted(episodes) for s in range(len(episodes[k]) - goal_offset)]
    if len(rows) < num:
        raise ValueError(f"only {len(rows)} start rows have a goal {goal_offset} steps later; {num} episodes requested")
    pick = np.random.default_rng(seed).choice(len(rows), size=num, replace=False)
    return [rows[i] for i in pick]


@dataclass
class EpisodeResult:
    key: str
    start: int
    success: bool
    steps: int  # env steps taken (first success, or the budget)
    plans: int
    plan_seconds: float  # total solver time of this episode
    wall_seconds: float
    final_position_error: float
    final_angle_error: float
    category: str = ""  # cjepa.plan.diagnose.classify_episode: success or why the episode failed
    video: str = ""  # where the episode's video was saved, if it was recorded
    frames: Optional[np.ndarray] = field(default=None, repr=False)


def run_episode(env: PushTEnv, planner: MPCPlanner, start_state: np.ndarray, goal_state: np.ndarray, budget: int,
                *, key: str = "", start: int = 0, record: bool = False,
                pixel_size: Optional[int] = None, pixel_masks: bool = False) -> EpisodeResult:
    """Reset to ``start_state``, act until success or ``budget`` steps. ``record`` keeps a video (observation |
    goal | the model's predicted final frame of the plan being executed, where the model has a view; see
    :mod:`cjepa.plan.video`); ``pixel_size`` feeds the planner frames and a goal image rendered at that side (a
    pixel encoder's input size), None = states only; ``pixel_masks`` adds their instance masks (a conditional
    encoder seeds its slots from the first frame's objects)."""
    t0 = time.perf_counter()
    obs = env.reset(start_state, goal_state, render_goal=record, goal_sizes=(pixel_size,) if pixel_size else ())
    goal = Goal(proprio=state_to_proprio(goal_state), state=np.asarray(goal_state),
                pixels=env.goal_frames[pixel_size] if pixel_size else None,
                masks=env.goal_masks[pixel_size] if pixel_size and pixel_masks else None)
    planner.reset(goal)
    n_plans0, secs0 = len(planner.plan_seconds), sum(planner.plan_seconds)
    view = prediction_view(planner.wm, env.render_size) if record else None
    history = EpisodeHistory()

    def observe(obs: dict) -> None:  # the state, and the frame and masks where the planner reads pixels
        history.add_frame(obs, env.render(pixel_size) if pixel_size else None,
                          env.render_masks(pixel_size) if pixel_size and pixel_masks else None)

    observe(obs)
    seen = [env.render()] if record else []  # observation frames
    predicted: list[np.ndarray] = []  # one predicted final frame per plan
    plan_of = [0]  # per observation frame: the plan whose action led to it (frame 0: the first)
    success, steps = False, 0
    for steps in range(1, budget + 1):
        plans_before = len(planner.plan_seconds)
        action = planner.act(history)
        if view is not None and len(planner.plan_seconds) > plans_before:
            predicted.append(view.frame(*planner.last_solve))
        obs, success, _ = env.step(action)
        history.add_action(action)
        observe(obs)
        if record:
            seen.append(env.render())
            plan_of.append(max(len(predicted) - 1, 0))
        if success:
            break
    state = obs["state"]
    return EpisodeResult(
        key=key, start=start, success=bool(success), steps=steps,
        plans=len(planner.plan_seconds) - n_plans0, plan_seconds=sum(planner.plan_seconds) - secs0,
        wall_seconds=time.perf_counter() - t0,
        final_position_error=float(position_error(goal_state, state)),
        final_angle_error=float(angle_error(goal_state[4], state[4])),
        category=classify_episode(np.stack(history.states), goal_state),
        frames=_video(seen, env.goal_frame, predicted, plan_of, view) if record else None,
    )


def _video(seen: list[np.ndarray], goal_frame: np.ndarray, predicted: list[np.ndarray], plan_of: list[int],
           view) -> np.ndarray:
    """(T, label + size, panels * size, 3): observation | goal | predicted final frame of the current plan."""
    frames = []
    for t, frame in enumerate(seen):
        panels, labels = [frame, goal_frame], [f"step {t}", "goal"]
        if view is not None and predicted:
            panels.append(predicted[plan_of[t]])
            labels.append(f"{view.label} {plan_of[t] + 1}")
        frames.append(episode_frame(panels, labels))
    return np.stack(frames)


def success_by_step(results: list[EpisodeResult], budget: int) -> list[float]:
    """Percent of ``results`` solved within k env steps, for k = 1 .. budget (the last is the success rate)."""
    if not results:
        raise ValueError("success_by_step needs at least one episode")
    first = np.array([r.steps if r.success else budget + 1 for r in results])
    return [100.0 * float(np.mean(first <= k)) for k in range(1, budget + 1)]


@dataclass
class ModelEval:
    name: str
    success_rate: dict[int, float]  # seed -> percent
    episodes: dict[int, list[EpisodeResult]]
    budget: int  # env steps per episode
    videos: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.success_rate.values())

    @property
    def std(self) -> float:
        v = list(self.success_rate.values())
        return statistics.stdev(v) if len(v) > 1 else 0.0

    def ci95(self) -> MeanCI:
        """Mean and 95 % t-interval over the per-seed success rates."""
        return mean_ci(list(self.success_rate.values()))

    def success_by_step(self) -> list[float]:
        """Mean over seeds of the per-seed cumulative success curves (percent solved within k steps)."""
        curves = np.array([success_by_step(eps, self.budget) for eps in self.episodes.values()])  # (seeds, budget)
        return curves.mean(0).tolist()

    def plan_seconds(self) -> list[float]:
        return [e.plan_seconds / max(e.plans, 1) for eps in self.episodes.values() for e in eps]

    def episode_seconds(self) -> list[float]:
        return [e.plan_seconds for eps in self.episodes.values() for e in eps]

    def summary(self) -> dict:
        per_plan, per_ep, ci = self.plan_seconds(), self.episode_seconds(), self.ci95()
        return {
            "name": self.name,
            "success_rate_per_seed": {str(k): v for k, v in self.success_rate.items()},
            "success_rate_mean": self.mean,
            "success_rate_std": self.std,
            "success_rate_ci95": [ci.low, ci.high],  # t-interval over seeds; null with one seed
            "success_by_step": self.success_by_step(),  # percent solved within k = 1 .. budget steps
            "plan_seconds_median": statistics.median(per_plan),
            "episode_planning_seconds_mean": statistics.fmean(per_ep),
            "episodes_total_planning_seconds_per_seed": statistics.fmean(
                [sum(e.plan_seconds for e in eps) for eps in self.episodes.values()]),
            "videos": self.videos,
            "episodes": {str(s): [{k: v for k, v in asdict(e).items() if k != "frames"} for e in eps]
                         for s, eps in self.episodes.items()},
        }


def episode_seed(seed: int, index: int) -> int:
    """CEM seed of the ``index``-th drawn pair of ``seed``: every episode draws from its own stream, so the
    episodes give the same results in any order, alone or split over processes."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


@dataclass(frozen=True)
class EpisodeJob:
    """One episode of the protocol: the ``index``-th pair drawn for ``seed``. With ``video`` (a path without the
    suffix) the episode is recorded and saved there, "_success" or "_fail" appended."""

    seed: int
    index: int
    key: str
    start: int
    video: str = ""


class EpisodeRunner:
    """Runs :class:`EpisodeJob` s with a fresh planner per episode (``make_planner(episode_seed(...))``), serially
    or in ``workers`` forked processes; the results come back in job order and are identical either way."""

    def __init__(self, make_planner: Callable[[int], MPCPlanner], episodes: Mapping[str, np.ndarray], *,
                 goal_offset: int, budget: int, render_size: int = 64, pixel_size: Optional[int] = None,
                 pixel_masks: bool = False):
        self.make_planner, self.episodes = make_planner, episodes
        self.goal_offset, self.budget, self.render_size = goal_offset, budget, render_size
        # Planners that read rendered frames get them at this side, with instance masks where asked (run_episode).
        self.pixel_size, self.pixel_masks = pixel_size, pixel_masks
        self._env: Optional[PushTEnv] = None

    def run(self, job: EpisodeJob) -> EpisodeResult:
        if self._env is None:
            self._env = PushTEnv(self.render_size)
        states = self.episodes[job.key]
        res = run_episode(self._env, self.make_planner(episode_seed(job.seed, job.index)), states[job.start],
                          states[job.start + self.goal_offset], self.budget, key=job.key, start=job.start,
                          record=bool(job.video), pixel_size=self.pixel_size,
                          pixel_masks=self.pixel_masks)
        if job.video and res.frames is not None:
            tag = "success" if res.success else "fail"
            res.video, res.frames = str(save_video(res.frames, Path(f"{job.video}_{tag}.mp4"))), None
        return res

    def map(self, jobs: list[EpisodeJob], workers: int = 1) -> Iterator[EpisodeResult]:
        """Results of ``jobs`` in order, as they finish. ``workers`` > 1 forks that many processes, which inherit
        the planner factory and episodes (nothing is pickled but jobs and results), one torch thread each."""
        if workers <= 1 or len(jobs) <= 1:
            yield from map(self.run, jobs)
            return
        import multiprocessing

        global _RUNNER
        _RUNNER = self
        try:
            with multiprocessing.get_context("fork").Pool(min(workers, len(jobs)), initializer=_init_worker) as pool:
                yield from pool.imap(_run_job, jobs)
        finally:
            _RUNNER = None


_RUNNER: Optional[EpisodeRunner] = None  # the runner whose jobs the forked workers execute


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # the workers share the cores: one thread each


def _run_job(job: EpisodeJob) -> EpisodeResult:
    if _RUNNER is None:  # pragma: no cover - only reachable if a worker is not forked from EpisodeRunner.map
        raise RuntimeError("no EpisodeRunner in this worker")
    return _RUNNER.run(job)


def evaluate_planner(name: str, make_planner: Callable[[int], MPCPlanner], episodes: Mapping[str, np.ndarray], plan_cfg,
                     *, out_dir: Optional[Path] = None, progress=None,
                     done: Optional[Mapping[tuple[int, int], EpisodeResult]] = None,
                     pixel_size: Optional[int] = None, pixel_masks: bool = False) -> ModelEval:
    """Run the protocol for one world model. ``make_planner(seed)`` builds a fresh planner (CEM seeded); one is
    made per episode, with the episode's own seed (:func:`episode_seed`), and ``plan_cfg.workers`` processes run
    the episodes of a seed in parallel.

    With ``out_dir``, every finished episode is also appended to ``out_dir/episodes.jsonl`` (long CPU runs can
    be read while they go), and the first ``plan_cfg.videos`` episodes of the first seed are saved as videos.
    ``done`` maps (seed, index) to episodes an interrupted run of the same evaluation already finished: they are
    taken as they are, not planned again (every episode has its own CEM stream, so the results are those of an
    uninterrupted run), and only the others are run and appended to ``episodes.jsonl``. ``pixel_size``: the planner
    observes rendered frames and a rendered goal image of that side (plan.encoder=pixels), with their instance masks
    if ``pixel_masks``.
    """
    import json

    runner = EpisodeRunner(make_planner, episodes, goal_offset=plan_cfg.goal_offset, budget=plan_cfg.budget,
                           render_size=plan_cfg.video_size, pixel_size=pixel_size,
                           pixel_masks=pixel_masks)
    rates: dict[int, float] = {}
    results: dict[int, list[EpisodeResult]] = {}
    videos: list[str] = []
    for si, seed in enumerate(plan_cfg.seeds):
        pairs = sample_start_goal_pairs(episodes, plan_cfg.episodes, seed, plan_cfg.goal_offset)
        record = out_dir is not None and si == 0
        jobs = [EpisodeJob(seed, i, key, start, str(Path(out_dir, "videos", f"{name}_seed{seed}_{i:02d}_{key}_{start}"))
                           if record and i < plan_cfg.videos else "")
                for i, (key, start) in enumerate(pairs)]
        results[seed] = []
        finished = {}  # index -> the interrupted run's result for the same pair
        for j in jobs:
            res = (done or {}).get((seed, j.index))
            if res is not None and (res.key, res.start) == (j.key, j.start):
                finished[j.index] = res
        fresh = runner.map([j for j in jobs if j.index not in finished], plan_cfg.workers)
        for job in jobs:
            res = finished[job.index] if job.index in finished else next(fresh)
            if res.video:
                videos.append(res.video)
            results[seed].append(res)
            if out_dir is not None and job.index not in finished:
                row = {"model": name, "seed": seed, "index": job.index,
                       **{k: v for k, v in asdict(res).items() if k != "frames"}}
                with open(Path(out_dir) / "episodes.jsonl", "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            if progress is not None:
                progress.update(1)
                so_far = results[seed]
                progress.set_postfix(model=name, seed=seed,
                                     success=f"{100 * sum(r.success for r in so_far) / len(so_far):.0f}%")
        rates[seed] = 100.0 * sum(r.success for r in results[seed]) / len(results[seed])
    return ModelEval(name=name, success_rate=rates, episodes=results, budget=plan_cfg.budget, videos=videos)


def zero_action_success(episodes: Mapping[str, np.ndarray], pairs: list[tuple[str, int]], goal_offset: int,
                        budget: int) -> float:
    """Lower bound for the table: success rate (%) of doing nothing (action 0 every step) on the same pairs."""
    env = PushTEnv(64)
    wins = 0
    for key, start in pairs:
        states = episodes[key]
        env.reset(states[start], states[start + goal_offset])
        for _ in range(budget):
            _, success, _ = env.step(np.zeros(2))
            if success:
                wins += 1
                break
    return 100.0 * wins / len(pairs)
