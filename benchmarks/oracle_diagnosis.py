"""Why does the simulator oracle plateau? Measurements for the Push-T planning protocol (CPU).

Subcommands (each appends one JSON record per run, with git SHA, machine and date, to ``--out``):

* ``displacement``: what the protocol's start/goal pairs ask for (agent travel, block travel, block rotation
  over ``goal_offset`` steps), over every valid start row of the held-out expert episodes, and for the pairs
  drawn with a seed.
* ``landscape``: the embedding cost (slot and proprio terms) around the drawn goals, per error in one
  quantity, and how often the slot cost is non-monotonic along a straight path to the goal.
* ``oracle``: the simulator as the world model on ``--episodes`` pairs of one seed, with the cost in the
  state-slot embedding (``--cost embedding``, ``--proprio-weight``) or in true state space (``--cost state``),
  and CEM's ``--samples`` / ``--iterations``; per episode: success, steps, final errors, failure category
  (``cjepa.plan.diagnose``), displacement.
* ``solve``: one CEM solve per pair (an episode's first plan): does the returned plan reach the goal at the
  horizon, and how does its cost compare with the expert's own actions (a plan known to reach the goal)?
* ``steps``: simulated env steps per second of the oracle's replay (``PushTEnv.simulate``) against reset +
  step per candidate and against the replay before its cheaper path, on the same candidates, and whether they
  agree.
* ``trace``: why given pairs fail: per plan, CEM's elite cost, best candidate and elite spread per iteration,
  the plan's best and last step, the expert's own actions replayed, where the block ends.

Episodes come from ``--dataset`` (a ``cjepa pusht`` state-slot store, split ``--split``); the embedding cost
needs ``--checkpoint`` (its proprio/action embedders and normaliser; the state cost uses only its normaliser,
which maps CEM's normalised actions to the env).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def provenance(argv: list[str]) -> dict:
    root = Path(__file__).resolve().parents[1]
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True).stdout.strip())
    return {"git_sha": sha, "git_dirty": dirty,
            "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
            "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "argv": list(argv)}


def append_record(path: str, record: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def quantiles(x) -> dict:
    x = np.asarray(x, np.float64)
    q = np.quantile(x, [0.1, 0.25, 0.5, 0.75, 0.9])
    return {"mean": float(x.mean()), "p10": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
            "p75": float(q[3]), "p90": float(q[4]), "n": int(len(x))}


def _random_episodes(args) -> dict[str, np.ndarray]:
    """{key: states (T, 7)} of the store's random-explorer episodes (stable-worldmodel's WeakPolicy): what the
    pairs would ask for if the evaluation data were recorded with that policy."""
    from cjepa.data.slot_store import SlotSplit

    videos = SlotSplit(args.dataset, args.split)
    out = {k: np.asarray(videos.extra(k, "state"), np.float64) for k in videos if k.startswith("random")}
    if not out:
        raise SystemExit(f"{args.dataset}/{args.split}: no random episodes")
    return out


def cmd_displacement(args) -> dict:
    from cjepa.plan.diagnose import displacement
    from cjepa.plan.evaluate import load_expert_episodes, sample_start_goal_pairs

    eps = load_expert_episodes(args.dataset, args.split) if args.kind == "expert" else _random_episodes(args)
    rows = [(k, s) for k in sorted(eps) for s in range(len(eps[k]) - args.goal_offset)]

    def stats(pairs):
        d = [displacement(eps[k][s], eps[k][s + args.goal_offset]) for k, s in pairs]
        out = {key: quantiles([x[key] for x in d]) for key in ("agent_px", "block_px", "block_rad")}
        out["block_static_fraction"] = float(np.mean([x["block_px"] < 1 and x["block_rad"] < 0.01 for x in d]))
        return out

    lengths = [len(v) for v in eps.values()]
    speed = np.concatenate([np.linalg.norm(np.diff(v[:, :2], axis=0), axis=1) for v in eps.values()])
    return {"kind": "displacement", "dataset_split": args.split, "episode_kind": args.kind, "episodes": len(eps),
            "episode_length": quantiles(lengths), "agent_px_per_step": quantiles(speed), "all_rows": stats(rows),
            **{f"seed{s}_pairs": stats(sample_start_goal_pairs(eps, args.episodes, s,
                                                               args.goal_offset)) for s in args.seeds}}


def _world_model(args):
    from cjepa.config import PlanConfig
    from cjepa.plan.world_model import SimulatorWorldModel, build_world_model

    pc = PlanConfig(proprio_weight=args.proprio_weight)
    slot_model = build_world_model(args.checkpoint, pc, dataset=args.dataset)
    if args.embedding_cycles:  # the oracle embeds states itself: another embedding needs no new store
        from cjepa.data.pusht import StateSlotEmbedding

        emb = slot_model.encoder.embedding
        slot_model.encoder.embedding = StateSlotEmbedding(emb.slot_dim, emb.background_slots,
                                                          cycles=args.embedding_cycles)
    return SimulatorWorldModel(slot_model, cost_space=args.cost, angle_weight=args.angle_weight,
                               final_weight=args.final_weight, mean_weight=args.mean_weight,
                               agent_weight=args.agent_weight, success_first=args.success_first,
                               agent_weight_placed=args.agent_weight_placed,
                               placed_first_rank=args.placed_first), pc


def cmd_oracle(args) -> dict:
    import torch

    from cjepa.plan.cem import CEM
    from cjepa.plan.diagnose import displacement
    from cjepa.plan.evaluate import EpisodeJob, EpisodeRunner, load_expert_episodes, sample_start_goal_pairs
    from cjepa.plan.mpc import MPCPlanner

    torch.set_num_threads(1)
    eps = load_expert_episodes(args.dataset, args.split)
    drawn = list(enumerate(sample_start_goal_pairs(eps, args.episodes, args.seed, args.goal_offset)))
    if args.pairs:
        drawn = [drawn[i] for i in args.pairs]
    drawn = drawn[args.skip:]
    drawn = drawn[: args.limit] if args.limit else drawn
    wm, pc = _world_model(args)

    def make_planner(seed: int) -> MPCPlanner:
        # --shared-stream: one CEM stream continued over the pairs of this process (the records before the
        # per-episode streams); otherwise each pair plans with its own stream (cjepa.plan.evaluate.episode_seed)
        cem = shared if args.shared_stream else CEM(num_samples=args.samples, topk=args.topk,
                                                     iterations=args.iterations, var_scale=args.var_scale, seed=seed)
        return MPCPlanner(wm, cem, horizon=pc.horizon, receding_horizon=pc.receding_horizon)

    shared = CEM(num_samples=args.samples, topk=args.topk, iterations=args.iterations, var_scale=args.var_scale,
                 seed=args.seed)
    if args.shared_stream and args.workers > 1:
        raise SystemExit("--shared-stream runs the pairs in one process: use --workers 1")
    runner = EpisodeRunner(make_planner, eps, goal_offset=args.goal_offset, budget=pc.budget)
    jobs = [EpisodeJob(args.seed, index, key, start) for index, (key, start) in drawn]
    results = []
    t0 = time.perf_counter()
    for job, res in zip(jobs, runner.map(jobs, args.workers)):
        states = eps[job.key]
        row = {"index": job.index, "key": job.key, "start": job.start, "success": res.success, "steps": res.steps,
               "category": res.category, "final_position_error": res.final_position_error,
               "final_angle_error": res.final_angle_error, "plan_seconds": res.plan_seconds,
               **displacement(states[job.start], states[job.start + args.goal_offset])}
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    cats: dict[str, int] = {}
    for r in results:
        cats[r["category"]] = cats.get(r["category"], 0) + 1
    wall = time.perf_counter() - t0
    return {"kind": "oracle", "embedding_cycles": args.embedding_cycles, "cost": args.cost,
            "proprio_weight": args.proprio_weight, "angle_weight": args.angle_weight,
            "final_weight": args.final_weight, "mean_weight": args.mean_weight, "agent_weight": args.agent_weight,
            "agent_weight_placed": args.agent_weight_placed, "placed_first": args.placed_first,
            "success_first": args.success_first, "samples": args.samples, "topk": args.topk,
            "iterations": args.iterations, "var_scale": args.var_scale,
            "seed": args.seed, "goal_offset": args.goal_offset, "episodes": len(results), "skip": args.skip,
            "limit": args.limit, "pairs": list(args.pairs or []), "workers": args.workers,
            "cem_stream": "shared" if args.shared_stream else "per_episode",
            "success_rate": 100.0 * sum(r["success"] for r in results) / len(results), "categories": cats,
            "wall_seconds": wall, "per_episode": results}


def cmd_solve(args) -> dict:
    """One CEM solve from each start (the first plan of an episode) against the expert's own 25 actions: how
    close the returned plan (the elite mean) gets, in the success rule's terms, and whether the optimum exists."""
    import torch

    from cjepa.envs.pusht import PushTEnv, is_success
    from cjepa.plan.cem import CEM
    from cjepa.plan.diagnose import displacement, normalised_errors, state_cost
    from cjepa.plan.evaluate import load_expert_episodes, sample_start_goal_pairs
    from cjepa.plan.world_model import Goal, Observation

    torch.set_num_threads(1)
    eps = load_expert_episodes(args.dataset, args.split)
    pairs = sample_start_goal_pairs(eps, args.episodes, args.seed, args.goal_offset)[args.skip:]
    wm, pc = _world_model(args)
    cem = CEM(num_samples=args.samples, topk=args.topk, iterations=args.iterations, var_scale=args.var_scale,
              seed=args.seed)
    env = PushTEnv(64)
    acts = expert_actions(args)
    rows = []
    for key, start in pairs:
        s0, goal = eps[key][start], eps[key][start + args.goal_offset]
        nodes = wm.encode(Observation(proprio=s0[None, [0, 1, 5, 6]], state=s0[None]))
        g = wm.encode_goal(Goal(proprio=goal[[0, 1, 5, 6]], state=goal))
        res = cem.solve(lambda c: wm.cost(wm.rollout(nodes, c), g), pc.horizon, wm.action_dim)
        plan = wm.blocks_to_env(res.mean)
        path = env.simulate(s0, plan)
        expert = env.simulate(s0, acts[key][start : start + args.goal_offset])
        expert_blocks = torch.from_numpy(wm.model.normalise_actions(
            acts[key][start : start + args.goal_offset].reshape(pc.horizon, -1))).float()[None]
        rows.append({"key": key, "start": start, **displacement(s0, goal),
                     "plan_final_state_cost": float(state_cost(path[-1], goal)),
                     **{f"plan_final_{k}_error": float(v) for k, v in normalised_errors(path[-1], goal).items()},
                     "plan_success_at_end": bool(is_success(goal, path[-1])),
                     "plan_success_any_step": bool(is_success(goal, path).any()),
                     "plan_model_cost": float(wm.cost(wm.rollout(nodes, res.mean[None]), g)[0]),
                     "elite_cost": res.elite_cost,
                     "expert_final_state_cost": float(state_cost(expert[-1], goal)),
                     "expert_model_cost": float(wm.cost(wm.rollout(nodes, expert_blocks), g)[0])})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"kind": "solve", "cost": args.cost, "proprio_weight": args.proprio_weight, "samples": args.samples,
            "topk": args.topk, "iterations": args.iterations, "var_scale": args.var_scale, "seed": args.seed,
            "episodes": len(rows),
            "plan_success_at_end": sum(r["plan_success_at_end"] for r in rows),
            "plan_success_any_step": sum(r["plan_success_any_step"] for r in rows), "per_episode": rows}


def _original_angle_error(goal_angle: float, angle: np.ndarray) -> np.ndarray:
    """stable-worldmodel's ``eval_state`` angle difference (T block: symmetry 2 pi), written as it is there."""
    d = np.abs(goal_angle - angle) % (2 * np.pi)
    return np.minimum(d, 2 * np.pi - d)


def play_recorded(env, planner, s0: np.ndarray, goal: np.ndarray, budget: int, on_plan) -> tuple:
    """One MPC episode from ``s0`` (the planner already reset to ``goal``) until success or ``budget`` steps;
    ``on_plan(step)`` is called after every fresh plan (``step`` = env steps taken before it) and its results are
    collected. Returns (history, success, steps, per-plan records)."""
    from cjepa.plan.mpc import EpisodeHistory

    history = EpisodeHistory()
    history.add_frame(env.reset(s0, goal))
    plans, success, steps = [], False, 0
    for steps in range(1, budget + 1):
        before = len(planner.plan_seconds)
        action = planner.act(history)
        if len(planner.plan_seconds) > before:
            plans.append(on_plan(steps - 1))
        obs, success, _ = env.step(action)
        history.add_action(action)
        history.add_frame(obs)
        if success:
            break
    return history, success, steps, plans


def cmd_trace(args) -> dict:
    """Why pairs fail: per pair (``--pairs``, indices into the seed's draw of ``--episodes``), what it asks for,
    the expert's own actions replayed (their cost, their size in CEM's normalised units), and an episode of the
    oracle with, per plan, CEM's elite cost, best candidate and elite spread per iteration, the plan's own cost
    (best step and last step), its largest action, and where the block ends against the goal."""
    import torch

    from cjepa.envs.pusht import PushTEnv, angle_error, is_success, state_to_proprio
    from cjepa.plan.cem import CEM
    from cjepa.plan.diagnose import classify_episode, displacement, normalised_errors, state_cost
    from cjepa.plan.evaluate import episode_seed, load_expert_episodes, sample_start_goal_pairs
    from cjepa.plan.mpc import MPCPlanner
    from cjepa.plan.world_model import Goal

    torch.set_num_threads(1)
    eps = load_expert_episodes(args.dataset, args.split)
    drawn = sample_start_goal_pairs(eps, args.episodes, args.seed, args.goal_offset)
    wm, pc = _world_model(args)
    acts = expert_actions(args)
    env = PushTEnv(64)
    rows = []
    for index in args.pairs or [0]:
        key, start = drawn[index]
        s0, goal = eps[key][start], eps[key][start + args.goal_offset]
        expert_raw = acts[key][start : start + args.goal_offset]  # (25, 2)
        expert_path = env.simulate(s0, expert_raw)  # (25, 7)
        expert_z = wm.model.normalise_actions(expert_raw.reshape(pc.horizon, -1))
        planner = MPCPlanner(wm, CEM(num_samples=args.samples, topk=args.topk, iterations=args.iterations,
                                     var_scale=args.var_scale, seed=episode_seed(args.seed, index)),
                             horizon=pc.horizon, receding_horizon=pc.receding_horizon)
        planner.reset(Goal(proprio=state_to_proprio(goal), state=goal))

        def plan_record(at_step: int, planner=planner, goal=goal) -> dict:
            res = planner.last_result
            plan_states = wm.simulate(res.mean[None], every=1)[0, 1:]  # (25, 7) the plan as CEM scored it
            plan_cost = state_cost(plan_states, goal, args.angle_weight)
            return {
                "at_step": at_step, "elite_cost": res.cost_history, "best_cost": res.best_history,
                "elite_std": res.std_history, "plan_best_step_cost": float(plan_cost.min()),
                "plan_best_step": int(plan_cost.argmin()) + 1, "plan_last_step_cost": float(plan_cost[-1]),
                "plan_max_abs_action": float(np.abs(wm.blocks_to_env(res.mean)).max()),
                "plan_max_abs_z": float(res.mean.abs().max()), "seconds": planner.plan_seconds[-1]}

        history, success, steps, plans = play_recorded(env, planner, s0, goal, pc.budget, plan_record)
        states = np.stack(history.states)
        err = normalised_errors(states[-1], goal)
        wrap_gap = float(np.abs(angle_error(goal[4], states[:, 4])
                                - _original_angle_error(goal[4], states[:, 4])).max())
        rows.append({
            "index": index, "key": key, "start": start, **displacement(s0, goal),
            "expert_path_cost_min": float(state_cost(expert_path, goal).min()),
            "expert_final_cost": float(state_cost(expert_path[-1], goal)),
            "expert_max_abs_action": float(np.abs(expert_raw).max()), "expert_max_abs_z": float(np.abs(expert_z).max()),
            "expert_agent_travel_px": float(np.linalg.norm(np.diff(np.vstack([s0[None], expert_path])[:, :2], axis=0),
                                                           axis=1).sum()),
            "success": bool(success), "steps": steps, "category": classify_episode(states, goal),
            "final_block_px": float(err["block"]), "final_agent_px": float(err["agent"]),
            "final_angle_rad": float(err["angle"]),
            "best_margin": float(normalised_errors(states, goal)["margin"].min()),
            **_closest_block(states, goal),
            "success_rule_agrees": bool((is_success(goal, states[1:]).any()) == success),
            "angle_wrap_max_gap": wrap_gap, "plans": plans})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "plans"}), file=sys.stderr, flush=True)
    return {"kind": "trace", "cost": args.cost, "mean_weight": args.mean_weight, "agent_weight": args.agent_weight,
            "agent_weight_placed": args.agent_weight_placed, "placed_first": args.placed_first,
            "success_first": args.success_first,
            "final_weight": args.final_weight, "samples": args.samples, "topk": args.topk,
            "iterations": args.iterations, "var_scale": args.var_scale, "seed": args.seed, "episodes": args.episodes,
            "pairs": list(args.pairs or [0]), "per_episode": rows}


def _closest_block(states: np.ndarray, goal: np.ndarray) -> dict:
    """Where the block came closest to its goal in an episode's states (T, 7): its distance (px) and the agent's
    there, and on how many steps the block was placed (within the success rule's tolerances on its own)."""
    from cjepa.plan.diagnose import block_placed, normalised_errors

    err = normalised_errors(states, goal)
    b = int(np.argmin(err["block"]))
    return {"closest_block_px": float(err["block"][b]), "closest_block_agent_px": float(err["agent"][b]),
            "closest_block_step": b, "block_placed_steps": int(block_placed(states, goal).sum())}


def expert_actions(args) -> dict:
    from cjepa.data.slot_store import SlotSplit

    videos = SlotSplit(args.dataset, args.split)
    return {k: np.asarray(videos.extra(k, "action"), np.float64) for k in videos if k.startswith("expert")}


def cmd_landscape(args) -> dict:
    """The embedding cost around the goals of the drawn pairs: slot and proprio terms for a given error in one
    quantity (agent / block position, block angle, agent velocity), and how often the slot cost is
    non-monotonic along the straight path from the start's agent position (or block pose) to the goal's."""
    import torch

    from cjepa.envs.pusht import state_to_proprio
    from cjepa.plan.evaluate import load_expert_episodes, sample_start_goal_pairs
    from cjepa.plan.matching import matched_mse
    from cjepa.plan.world_model import Goal

    torch.set_num_threads(1)
    eps = load_expert_episodes(args.dataset, args.split)
    pairs = sample_start_goal_pairs(eps, args.episodes, args.seed, args.goal_offset)
    wm, _ = _world_model(args)
    slot_model = wm.model
    S = slot_model.num_slots

    def terms(states, goal):
        g = slot_model.encode_goal(Goal(proprio=state_to_proprio(goal), state=goal))
        slots = torch.from_numpy(slot_model.encoder.embedding(states)).float()
        prop = slot_model.predictor.proprio_encoder(slot_model._tensor(
            slot_model.normalizer.proprio(state_to_proprio(states).astype(np.float32))))
        slot = matched_mse(slots, g[:S].expand(len(states), -1, -1), slot_model.max_perm_slots)
        return slot.detach().numpy(), (prop - g[S]).pow(2).mean(-1).detach().numpy()

    offsets = {"agent_px": (0, [10, 20, 40, 64, 100, 150]), "block_px": (2, [10, 20, 40, 64, 100]),
               "angle_rad": (4, [0.1, math.pi / 9, 0.7, 1.4]), "velocity_px_s": (5, [50, 100, 200])}
    table = {}
    for name, (i, values) in offsets.items():
        for v in values:
            sl, pr = [], []
            for k, s in pairs:
                goal = eps[k][s + args.goal_offset]
                st = goal.copy()
                st[i] += v
                a, b = terms(st[None], goal)
                sl.append(a[0])
                pr.append(b[0])
            table[f"{name}={v:.3g}"] = {"slot": float(np.mean(sl)), "proprio": float(np.mean(pr))}
    ts = np.linspace(0, 1, 41)[:, None]
    nonmono = {"agent": 0, "block_position": 0, "block_angle": 0}
    for k, s in pairs:
        start, goal = eps[k][s], eps[k][s + args.goal_offset]
        for name, idx in (("agent", slice(0, 2)), ("block_position", slice(2, 4)), ("block_angle", slice(4, 5))):
            d = start[idx] - goal[idx]
            if name == "block_angle":
                d = (d + np.pi) % (2 * np.pi) - np.pi
            path = np.tile(goal, (len(ts), 1))
            path[:, idx] = goal[idx] + ts * d  # goal -> start
            nonmono[name] += bool(np.any(np.diff(terms(path, goal)[0]) < -1e-6))
    speed = [float(np.linalg.norm(eps[k][s + args.goal_offset][5:7])) for k, s in pairs]
    return {"kind": "landscape", "embedding_cycles": args.embedding_cycles, "pairs": len(pairs), "seed": args.seed,
            "mean_cost_at_offset": table, "non_monotonic_slot_cost_paths": nonmono,
            "goal_agent_speed_px_s": quantiles(speed)}


def _replay_through_space_step(env, start_state, actions) -> np.ndarray:
    """The replay as it was before the cheaper path: gym-pusht's contact-count callback in place and the engine
    stepped through ``Space.step`` (the baseline of ``steps``); states after every step, (N, 7)."""
    from cjepa.envs.pusht import ACTION_SCALE, DT, K_P, K_V, SUBSTEPS

    s = env.reset(start_state)["state"]
    agent, block, step = env.agent, env.block, env._sim.space.step
    px, py, vx, vy = float(s[0]), float(s[1]), float(s[5]), float(s[6])
    out = np.empty((len(actions), 7))
    for i, (ax, ay) in enumerate(np.asarray(actions, np.float64).tolist()):
        tx, ty = px + ACTION_SCALE * ax, py + ACTION_SCALE * ay
        for _ in range(SUBSTEPS):
            vx, vy = vx + (K_P * (tx - px) - K_V * vx) * DT, vy + (K_P * (ty - py) - K_V * vy) * DT
            agent.velocity = (vx, vy)
            step(DT)
            px, py = px + vx * DT, py + vy * DT
        b = block.position
        out[i] = (px, py, b.x, b.y, block.angle % (2 * np.pi), vx, vy)
    return out


def cmd_steps(args) -> dict:
    """Env steps per second of three replays of the same candidates, and whether they agree bit for bit:
    reset + step per action (the env's public path), the replay before the cheaper path (contact callback,
    Space.step), and ``PushTEnv.simulate``. Candidates: from each of the first 5 drawn pairs, ``--samples``
    sequences of 25 actions, half the expert's own plus N(0, 1) noise in normalised units (late CEM iterations,
    mostly pushing), half N(0, 1) (early iterations). ``--repeats`` interleaved timings; medians and ranges."""
    import torch

    from cjepa.envs.pusht import PushTEnv
    from cjepa.plan.evaluate import load_expert_episodes, sample_start_goal_pairs

    torch.set_num_threads(1)
    wm, pc = _world_model(args)
    eps = load_expert_episodes(args.dataset, args.split)
    acts = expert_actions(args)
    rng = np.random.default_rng(args.seed)
    cases = []
    for key, start in sample_start_goal_pairs(eps, args.episodes, args.seed, args.goal_offset)[:5]:
        expert = wm.model.normalise_actions(acts[key][start : start + args.goal_offset].reshape(pc.horizon, -1))
        z = rng.normal(size=(args.samples, pc.horizon, wm.action_dim))
        z[: args.samples // 2] += expert
        cases += [(eps[key][start], raw) for raw in wm.blocks_to_env(torch.from_numpy(z).float())]
    env = PushTEnv(64)

    def stepped(start, raw):
        env.reset(start)
        return np.array([env.step(a)[0]["state"] for a in raw])

    paths = {"step": stepped, "callback_replay": lambda s, a: _replay_through_space_step(env, s, a),
             "simulate": env.simulate}
    times: dict[str, list[float]] = {k: [] for k in paths}
    states: dict[str, list[np.ndarray]] = {}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            states[name] = [fn(s, a) for s, a in cases]
            times[name].append(time.perf_counter() - t0)
    n = sum(len(a) for _, a in cases)
    rate = {k: {"median": n / float(np.median(v)), "min": n / max(v), "max": n / min(v)} for k, v in times.items()}
    moved = sum(float(np.abs(x[-1, 2:5] - s[2:5]).max()) > 1.0 for (s, _), x in zip(cases, states["step"]))
    return {"kind": "steps", "candidates": len(cases), "env_steps": n, "repeats": args.repeats,
            "candidates_moving_block": moved, "steps_per_second": rate,
            "speedup_vs_step": float(np.median(times["step"]) / np.median(times["simulate"])),
            "speedup_vs_callback_replay": float(np.median(times["callback_replay"]) / np.median(times["simulate"])),
            "max_abs_state_difference": {k: max(float(np.abs(x - y).max()) for x, y in zip(states[k], states["step"]))
                                         for k in ("callback_replay", "simulate")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["displacement", "landscape", "oracle", "solve", "steps", "trace"])
    p.add_argument("--dataset", required=True, help="cjepa pusht state-slot store")
    p.add_argument("--split", default="val")
    p.add_argument("--checkpoint", default="", help="predictor checkpoint or run dir (embedders + normaliser)")
    p.add_argument("--out", required=True, help="JSONL file the record is appended to")
    p.add_argument("--goal-offset", type=int, default=25)
    p.add_argument("--kind", choices=["expert", "random"], default="expert",
                   help="displacement: the episodes whose start/goal pairs are measured")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--skip", type=int, default=0, help="drop the first SKIP drawn pairs (split a run over processes)")
    p.add_argument("--limit", type=int, default=0, help="oracle: run only the first LIMIT of the drawn pairs (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pairs", type=int, nargs="+", default=None,
                   help="trace, oracle: only these indices into the seed's drawn pairs (trace default: 0)")
    p.add_argument("--workers", type=int, default=1, help="oracle: processes running the pairs in parallel")
    p.add_argument("--shared-stream", action="store_true",
                   help="oracle: one CEM stream over the process's pairs (as before), not one per pair")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cost", choices=["embedding", "state", "state_path"], default="embedding")
    p.add_argument("--proprio-weight", type=float, default=1.0)
    p.add_argument("--angle-weight", type=float, default=1.0)
    p.add_argument("--final-weight", type=float, default=0.0, help="state_path: + this x the last step's cost")
    p.add_argument("--mean-weight", type=float, default=0.0, help="state_path: + this x the mean cost over steps")
    p.add_argument("--agent-weight", type=float, default=1.0, help="state costs: weight of the agent's position")
    p.add_argument("--agent-weight-placed", type=float, default=None,
                   help="state costs: the agent's weight at steps whose block is placed (default: --agent-weight)")
    p.add_argument("--placed-first", action="store_true",
                   help="state_path: steps whose block is placed outrank all others (placed_first)")
    p.add_argument("--success-first", action="store_true",
                   help="state_path: steps that meet the success rule outrank all others (success_first_cost)")
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--topk", type=int, default=30)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--embedding-cycles", type=float, nargs="+", default=None,
                   help="state-slot embedding frequencies (cycles per arena) for the oracle; default: the store's")
    p.add_argument("--var-scale", type=float, default=1.0, help="CEM's initial std in normalised action units")
    p.add_argument("--repeats", type=int, default=3, help="steps: interleaved timing repeats")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    start = provenance(argv)  # the code that runs is the code at the start
    record = {"displacement": cmd_displacement, "landscape": cmd_landscape, "oracle": cmd_oracle, "solve": cmd_solve,
              "steps": cmd_steps, "trace": cmd_trace}[args.command](args)
    record = {**start, **record}
    append_record(args.out, record)
    summary = {k: v for k, v in record.items() if k != "per_episode"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
