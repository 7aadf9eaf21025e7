"""Where does a learned Push-T world model's planner lose against the simulator oracle? Measurements (CPU).

The oracle (``benchmarks/oracle_diagnosis.py``) plans with the simulator as world model; here the planner uses
a trained predictor (``--checkpoint``) and every plan or candidate it scores is also replayed in the simulator
from the same state, so that the model's error, its cost and CEM can be told apart on the same start/goal pairs
(the first ``--episodes`` pairs drawn for ``--seed`` from the held-out expert episodes, as ``cjepa plan`` draws
them). Subcommands (each appends one JSON record, with git SHA, machine, date and load, to ``--out``):

* ``accuracy``: open-loop error of the model over the plan horizon (5 calls of one 5-step action block), on
  the expert's own actions from the start and on ``--samples`` action sequences of the kind CEM draws first
  (N(0, 1) in the normalised action space): predicted object slots and proprio node against those of the
  simulator replaying the same actions, per block, beside copy-last (the start frame held); with
  ``--decode N``, the final predicted frame of N sequences per pair is decoded to a state
  (``cjepa.plan.video.decode_state_slots``) and its agent / block error given in px and rad.
* ``fidelity``: CEM with the model from each pair's start (its first plan); the candidates of iterations
  ``--iterations-at`` are replayed: Spearman rank correlation of the model's cost with the same cost on the
  replayed (true) slots and with the success-rule cost (best env step, ``--agent-weight``), and how good the
  true outcome of the model's choice (its cheapest candidate, its elites) is against the best candidate.
* ``episodes``: MPC episodes with the model; each plan is replayed from the state it was planned from and
  classified: the replay reaches the goal (``reached``), the model predicted a success that the replay
  misses (``prediction``: the model is wrong), or even the model's own prediction of the chosen plan misses
  the goal (``planning``: CEM with the model's cost found nothing that reaches it). The cost the planner uses
  is the ``plan`` section's (``--cost-frames``, ``--agent-weight``, ``--proprio-weight``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.oracle_diagnosis import (  # noqa: E402
    append_record,
    expert_actions,
    play_recorded,
    provenance,
    quantiles,
)

# ----------------------------------------------------------------------------------------------- helpers


def ranks(x) -> np.ndarray:
    """Ranks 1..n of ``x`` (n,), ties sharing their mean rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):  # ties: average rank
        tie = x == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def spearman(a, b) -> float:
    """Spearman rank correlation of two (n,) arrays (Pearson correlation of their ranks); NaN when either is
    constant (no ranking to agree with)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"spearman needs two 1-d arrays of one length >= 2, got {a.shape} and {b.shape}")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def selection_quality(model_cost, true_cost, true_success, topk: int) -> dict:
    """How good is what the model picks among candidates, judged by their true outcome?

    model_cost, true_cost (n,) costs of the same candidates (lower is better), true_success (n,) bool: the
    replayed candidate reaches the goal. Returns the rank correlation, the true cost of the model's cheapest
    candidate against the cheapest true cost, that candidate's true rank as a fraction (0 = the true best), and
    the success fraction of the model's ``topk`` elites against that of all candidates and of the true top-k.
    """
    m, t, s = (np.asarray(v) for v in (model_cost, true_cost, true_success))
    if not (m.shape == t.shape == s.shape) or m.ndim != 1 or not 1 <= topk <= len(m):
        raise ValueError(f"selection_quality needs (n,) arrays of one shape and 1 <= topk <= n; got {m.shape}, "
                         f"{t.shape}, {s.shape}, topk={topk}")
    pick = int(np.argmin(m))
    elites, true_elites = np.argsort(m, kind="stable")[:topk], np.argsort(t, kind="stable")[:topk]
    return {"spearman": spearman(m, t), "chosen_true_cost": float(t[pick]), "best_true_cost": float(t.min()),
            "chosen_true_rank": float((ranks(t)[pick] - 1) / max(len(t) - 1, 1)),
            "chosen_success": bool(s[pick]), "any_success": bool(s.any()),
            "elite_success": float(s[elites].mean()), "all_success": float(s.mean()),
            "true_elite_success": float(s[true_elites].mean())}


def slot_errors(pred, true) -> dict:
    """pred, true (N, H, S + 2, D) node trajectories over H blocks (object slots in the embedding's order
    [agent, block, background...], then the proprio and action nodes) -> per block (H lists) the mean over N
    of: the matched object-slot MSE (the cost's slot term), the agent and block slot MSE by position, and the
    proprio-node MSE."""
    import torch

    from cjepa.plan.matching import matched_mse

    p, t = torch.as_tensor(pred, dtype=torch.float32), torch.as_tensor(true, dtype=torch.float32)
    if p.shape != t.shape or p.dim() != 4 or p.shape[2] < 4:
        raise ValueError(f"slot_errors needs two (N, H, S + 2, D) tensors of one shape, got {tuple(p.shape)} and "
                         f"{tuple(t.shape)}")
    S = p.shape[2] - 2
    return {"slots_matched": matched_mse(p[:, :, :S], t[:, :, :S]).mean(0).tolist(),
            "agent_slot": (p[:, :, 0] - t[:, :, 0]).pow(2).mean(-1).mean(0).tolist(),
            "block_slot": (p[:, :, 1] - t[:, :, 1]).pow(2).mean(-1).mean(0).tolist(),
            "proprio": (p[:, :, S] - t[:, :, S]).pow(2).mean(-1).mean(0).tolist()}


def plan_outcome(predicted_success: bool, real_success: bool) -> str:
    """A plan's category: ``reached`` (its replay reaches the goal), ``prediction`` (the model predicted a
    success its replay misses) or ``planning`` (the model's own prediction misses the goal too)."""
    if real_success:
        return "reached"
    return "prediction" if predicted_success else "planning"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in __import__("os").getloadavg())
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------- setup


def _plan_config(args):
    from cjepa.config import PlanConfig

    return PlanConfig(proprio_weight=args.proprio_weight, cost_frames=args.cost_frames,
                      agent_weight=args.agent_weight, num_samples=args.cem_samples, topk=args.cem_topk,
                      iterations=args.cem_iterations, precision=args.precision,
                      receding_horizon=args.receding_horizon)


def _models(args):
    """(learned SlotWorldModel, or an EnsembleWorldModel led by it with --ensemble; SimulatorWorldModel over the
    checkpoint's model with the protocol's cost; PlanConfig)."""
    from cjepa.plan.world_model import EnsembleWorldModel, SimulatorWorldModel, build_world_model

    pc = _plan_config(args)
    model = build_world_model(args.checkpoint, pc, dataset=args.dataset)
    sim = SimulatorWorldModel(model)
    if args.ensemble:  # the plans are the ensemble's; what is decoded of them is the first member's prediction
        model = EnsembleWorldModel([model] + [build_world_model(c, pc, dataset=args.dataset) for c in args.ensemble])
    return model, sim, pc


def _pairs(args):
    from cjepa.plan.evaluate import load_expert_episodes, sample_start_goal_pairs

    eps = load_expert_episodes(args.dataset, args.split)
    drawn = list(enumerate(sample_start_goal_pairs(eps, args.pairs_drawn, args.seed, args.goal_offset)))
    return eps, drawn[args.skip : args.skip + args.episodes]


def _start_obs(state):
    from cjepa.envs.pusht import state_to_proprio
    from cjepa.plan.world_model import Observation

    s = np.asarray(state, np.float64)
    return Observation(proprio=state_to_proprio(s)[None], state=s[None])


def past_observation(states, actions, start: int, frames: int, stride: int):
    """The observation at ``start`` of a recorded episode with up to ``frames`` observed frames ``stride`` steps
    apart (fewer near the episode's beginning, as an episode's own history has) and the actions between them."""
    from cjepa.envs.pusht import state_to_proprio
    from cjepa.plan.world_model import Observation

    idx = [start - k * stride for k in range(frames - 1, -1, -1) if start - k * stride >= 0]
    s = np.asarray(states, np.float64)[idx]
    acts = np.stack([np.asarray(actions[i : i + stride]).reshape(-1) for i in idx[:-1]]) if len(idx) > 1 else None
    return Observation(proprio=state_to_proprio(s), state=s, actions=acts)


def _goal(state):
    from cjepa.envs.pusht import state_to_proprio
    from cjepa.plan.world_model import Goal

    g = np.asarray(state, np.float64)
    return Goal(proprio=state_to_proprio(g), state=g)


def true_costs(sim, cand, goal_state, agent_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (C, H, A) replayed from the simulator's encoded start -> (success-rule cost at the best env
    step (C,), success at any env step (C,))."""
    from cjepa.envs.pusht import is_success
    from cjepa.plan.diagnose import state_cost

    path = sim.simulate(cand, every=1)[:, 1:]  # (C, steps, 7)
    cost = state_cost(path, goal_state, 1.0, agent_weight).min(axis=1)
    return cost, np.array([bool(is_success(goal_state, p).any()) for p in path])


# ----------------------------------------------------------------------------------------------- commands


def cmd_accuracy(args) -> dict:
    import torch

    from cjepa.plan.video import decode_state_slots

    torch.set_num_threads(1)
    model, sim, pc = _models(args)
    eps, pairs = _pairs(args)
    acts = expert_actions(args)
    rng = np.random.default_rng(args.seed)
    H, S = pc.horizon, model.num_slots
    kinds = {"expert": [], "cem_random": []}  # per kind: (pred, true, copy) node trajectories over the H blocks
    decoded: dict[str, list[dict]] = {"expert": [], "cem_random": []}
    for _, (key, start) in pairs:
        s0 = eps[key][start]
        nodes = model.encode(past_observation(eps[key], acts[key], start, args.history_obs, pc.action_block))
        sim_nodes = sim.encode(_start_obs(s0))
        expert = model.normalise_actions(acts[key][start : start + H * pc.action_block].reshape(H, -1))
        random = rng.normal(size=(args.samples, H, model.action_dim))
        for kind, z in (("expert", expert[None]), ("cem_random", random)):
            cand = torch.as_tensor(z, dtype=torch.float32)
            pred = model.rollout(nodes, cand)[:, -H:]  # (C, H, S+2, D)
            true = sim.rollout(sim_nodes, cand)[:, -H:]
            copy = nodes[-1:].unsqueeze(0).expand_as(true)
            kinds[kind].append((pred, true, copy))
            states = sim.simulate(cand)[:, -1]  # (C, 7) true state after the H blocks
            for c in range(min(args.decode, len(cand))):
                guess = decode_state_slots(model.encoder.embedding, pred[c, -1, :S].numpy())[0]
                decoded[kind].append({"agent_px": float(np.linalg.norm(guess[:2] - states[c, :2])),
                                      "block_px": float(np.linalg.norm(guess[2:4] - states[c, 2:4])),
                                      "block_rad": float(_angle(guess[4], states[c, 4])),
                                      "block_moved_px": float(np.linalg.norm(states[c, 2:4] - s0[2:4]))})
    out = {}
    for kind, rows in kinds.items():
        pred, true, copy = (torch.cat([r[i] for r in rows]) for i in range(3))
        model_err, copy_err = slot_errors(pred, true), slot_errors(copy, true)
        out[kind] = {"sequences": len(pred), "model": model_err, "copy_last": copy_err,
                     "model_over_copy_last": {k: [m / c if c > 0 else float("nan") for m, c in
                                                  zip(model_err[k], copy_err[k])] for k in model_err}}
        if decoded[kind]:
            out[kind]["decoded_final"] = {k: quantiles([d[k] for d in decoded[kind]]) for k in decoded[kind][0]}
    return {"kind": "accuracy", "checkpoint_name": Path(args.checkpoint).name, "seed": args.seed,
            "history_obs": args.history_obs, "precision": pc.precision,
            "pairs": [p for p, _ in pairs], "samples": args.samples, "horizon_blocks": H, **out}


def _angle(a, b) -> float:
    from cjepa.envs.pusht import angle_error

    return float(angle_error(a, b))


def cmd_fidelity(args) -> dict:
    import torch

    from cjepa.plan.cem import CEM
    from cjepa.plan.evaluate import episode_seed

    torch.set_num_threads(1)
    model, sim, pc = _models(args)
    eps, pairs = _pairs(args)
    at = set(args.iterations_at)
    rows = []
    for index, (key, start) in pairs:
        s0, g = eps[key][start], eps[key][start + args.goal_offset]
        nodes, goal = model.encode(_start_obs(s0)), model.encode_goal(_goal(g))
        sim_nodes = sim.encode(_start_obs(s0))
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []

        def cost_fn(cand):
            cost = model.cost(model.rollout(nodes, cand), goal)
            seen.append((cand.clone(), cost.clone()))
            return cost

        cem = CEM(num_samples=pc.num_samples, topk=pc.topk, iterations=pc.iterations, var_scale=pc.var_scale,
                  seed=episode_seed(args.seed, index))
        cem.solve(cost_fn, pc.horizon, model.action_dim)
        per_iter = {}
        for it, (cand, cost) in enumerate(seen, start=1):
            if it not in at:
                continue
            true_emb = sim.model.cost(sim.rollout(sim_nodes, cand), goal).numpy()  # same cost, true slots
            true_state, success = true_costs(sim, cand, g, args.true_agent_weight)
            per_iter[str(it)] = {"vs_true_embedding": selection_quality(cost.numpy(), true_emb, success, pc.topk),
                                 "vs_success_rule": selection_quality(cost.numpy(), true_state, success, pc.topk),
                                 "model_cost_median": float(cost.median()),
                                 "true_embedding_cost_median": float(np.median(true_emb))}
        rows.append({"index": index, "key": key, "start": start, "iterations": per_iter})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    summary = {}
    for it in sorted(at):
        for ref in ("vs_true_embedding", "vs_success_rule"):
            vals = [r["iterations"][str(it)][ref] for r in rows if str(it) in r["iterations"]]
            if not vals:
                continue
            summary[f"iter{it}_{ref}"] = {
                "spearman_median": float(np.nanmedian([v["spearman"] for v in vals])),
                "chosen_true_rank_median": float(np.median([v["chosen_true_rank"] for v in vals])),
                "pairs_chosen_success": int(sum(v["chosen_success"] for v in vals)),
                "pairs_any_success": int(sum(v["any_success"] for v in vals)),
                "elite_success_mean": float(np.mean([v["elite_success"] for v in vals])),
                "true_elite_success_mean": float(np.mean([v["true_elite_success"] for v in vals]))}
    return {"kind": "fidelity", "checkpoint_name": Path(args.checkpoint).name, "seed": args.seed,
            "cost_frames": pc.cost_frames, "agent_weight": pc.agent_weight, "proprio_weight": pc.proprio_weight,
            "cem_samples": pc.num_samples, "cem_iterations": pc.iterations,
            "true_agent_weight": args.true_agent_weight, "pairs": len(rows), "summary": summary, "per_episode": rows}


def cmd_episodes(args) -> dict:
    import torch

    from cjepa.envs.pusht import PushTEnv, is_success
    from cjepa.plan.cem import CEM
    from cjepa.plan.diagnose import classify_episode, normalised_errors
    from cjepa.plan.evaluate import episode_seed
    from cjepa.plan.mpc import MPCPlanner
    from cjepa.plan.video import decode_state_slots

    torch.set_num_threads(1)
    model, sim, pc = _models(args)
    eps, pairs = _pairs(args)
    env = PushTEnv(64)
    rows, t0 = [], time.perf_counter()
    for index, (key, start) in pairs:
        s0, g = eps[key][start], eps[key][start + args.goal_offset]
        cem = CEM(num_samples=pc.num_samples, topk=pc.topk, iterations=pc.iterations, var_scale=pc.var_scale,
                  seed=episode_seed(args.seed, index))
        planner = MPCPlanner(model, cem, horizon=pc.horizon, receding_horizon=pc.receding_horizon,
                             history_obs=pc.history_obs)
        planner.reset(_goal(g))
        history, success, steps, plans = play_recorded(
            env, planner, s0, g, pc.budget,
            lambda at, planner=planner, g=g: _plan_record(model, sim, planner, g, at, decode_state_slots, is_success))
        states = np.stack(history.states)
        err = normalised_errors(states[-1], g)
        rows.append({"index": index, "key": key, "start": start, "success": bool(success), "steps": steps,
                     "category": classify_episode(states, g), "final_block_px": float(err["block"]),
                     "final_agent_px": float(err["agent"]), "final_angle_rad": float(err["angle"]),
                     "plans": plans})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "plans"}
                         | {"outcomes": [p["outcome"] for p in plans]}), file=sys.stderr, flush=True)
    outcomes = dict(Counter(p["outcome"] for r in rows for p in r["plans"]))  # in order of first appearance
    first = Counter(r["plans"][0]["outcome"] for r in rows)
    return {"kind": "episodes", "checkpoint_name": Path(args.checkpoint).name, "seed": args.seed,
            "ensemble": [Path(c).name for c in args.ensemble],
            "cost_frames": pc.cost_frames, "agent_weight": pc.agent_weight, "proprio_weight": pc.proprio_weight,
            "cem_samples": pc.num_samples, "cem_iterations": pc.iterations, "receding_horizon": pc.receding_horizon,
            "precision": pc.precision, "episodes": len(rows),
            "solved": int(sum(r["success"] for r in rows)),
            "success_rate": 100.0 * sum(r["success"] for r in rows) / max(len(rows), 1),
            "plan_outcomes": outcomes, "first_plan_outcomes": dict(sorted(first.items())),
            "wall_seconds": time.perf_counter() - t0, "per_episode": rows}


def _plan_record(model, sim, planner, goal_state, at_step, decode, is_success) -> dict:
    """The plan just made: the model's predicted states at its block boundaries (decoded), the same plan
    replayed in the simulator, and which of the two reach the goal."""
    obs, plan = planner.last_solve
    S = model.num_slots
    pred = model.rollout(model.encode(obs), plan[None])[0, -planner.horizon :, :S]  # (H, S, D)
    guesses = np.stack([decode(model.encoder.embedding, p.float().numpy())[0] for p in pred])  # (H, 7)
    sim.encode(obs)
    blocks = sim.simulate(plan[None])[0, 1:]  # (H, 7) true states at the block boundaries
    path = sim.simulate(plan[None], every=1)[0, 1:]  # (steps, 7)
    predicted = bool(is_success(goal_state, guesses).any())
    real = bool(is_success(goal_state, path).any())
    return {"at_step": at_step, "outcome": plan_outcome(predicted, real), "predicted_success": predicted,
            "real_success": real, "real_success_at_blocks": bool(is_success(goal_state, blocks).any()),
            "elite_cost": planner.last_result.elite_cost,
            "predicted_final_block_px": float(np.linalg.norm(guesses[-1, 2:4] - goal_state[2:4])),
            "real_final_block_px": float(np.linalg.norm(blocks[-1, 2:4] - goal_state[2:4])),
            "prediction_error_final_block_px": float(np.linalg.norm(guesses[-1, 2:4] - blocks[-1, 2:4])),
            "prediction_error_final_agent_px": float(np.linalg.norm(guesses[-1, :2] - blocks[-1, :2])),
            "prediction_error_final_rad": _angle(guesses[-1, 4], blocks[-1, 4])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["accuracy", "fidelity", "episodes"])
    p.add_argument("--dataset", required=True, help="cjepa pusht state-slot store")
    p.add_argument("--checkpoint", required=True, help="the learned world model (checkpoint or run dir)")
    p.add_argument("--split", default="val")
    p.add_argument("--out", required=True, help="JSONL file the record is appended to")
    p.add_argument("--goal-offset", type=int, default=25)
    p.add_argument("--pairs-drawn", type=int, default=50, help="pairs drawn for the seed (the protocol's 50)")
    p.add_argument("--episodes", type=int, default=10, help="pairs used: the first EPISODES of the draw")
    p.add_argument("--skip", type=int, default=0, help="start at this index of the draw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=32, help="accuracy: CEM-like random sequences per pair")
    p.add_argument("--history-obs", type=int, default=1,
                   help="accuracy: observed frames (the episode's own past, 5 steps apart; 1 = the protocol)")
    p.add_argument("--decode", type=int, default=0, help="accuracy: decode the final frame of N sequences per pair")
    p.add_argument("--iterations-at", type=int, nargs="+", default=[1, 30], help="fidelity: CEM iterations scored")
    p.add_argument("--true-agent-weight", type=float, default=0.25,
                   help="fidelity: agent weight of the success-rule cost the candidates are judged by")
    p.add_argument("--cost-frames", choices=["final", "best"], default="final", help="plan.cost_frames")
    p.add_argument("--agent-weight", type=float, default=1.0, help="plan.agent_weight")
    p.add_argument("--proprio-weight", type=float, default=1.0, help="plan.proprio_weight")
    p.add_argument("--cem-samples", type=int, default=300, help="plan.num_samples (the protocol's 300)")
    p.add_argument("--cem-topk", type=int, default=30, help="plan.topk (the protocol's 30)")
    p.add_argument("--cem-iterations", type=int, default=30, help="plan.iterations (the protocol's 30)")
    p.add_argument("--receding-horizon", type=int, default=5,
                   help="plan.receding_horizon: blocks executed before replanning (the protocol's 5 = the horizon)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="plan.precision of the learned model's rollouts")
    p.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT",
                   help="episodes: plan with the mean cost of --checkpoint and these models (plan.ensemble)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.ensemble and args.command != "episodes":
        p.error("--ensemble plans episodes; accuracy and fidelity measure one model")
    start = {**provenance(argv), "load_avg_at_start": _load()}
    record = {"accuracy": cmd_accuracy, "fidelity": cmd_fidelity, "episodes": cmd_episodes}[args.command](args)
    record = {**start, **record, "load_avg_at_end": _load()}
    append_record(args.out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "per_episode"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
