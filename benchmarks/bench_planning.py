"""Planning speed: batched slot matching (ours) vs the original's per-candidate scipy Hungarian loops.

Both providers run the same world model on the same device with the same CEM seed; the only difference is
how slot assignments are computed, in the rollout's re-matching after every prediction and in the final
cost (``SlotWorldModel(matching="batched" | "scipy")``; Q13). Before timing, the two are checked to give
the same rollouts and costs. Timed: (1) the matching alone (cost of 300 candidates against a goal),
(2) one full CEM plan (300 samples x 30 iterations x horizon 5 by default), (3) one MPC episode (50-step
budget: two plans plus the environment steps).

    python benchmarks/bench_planning.py                        # the CPU demo model size
    (configs/pusht/state_slots.yaml)
    python benchmarks/bench_planning.py --paper-size --device cuda   # 4 slots x 128-d, depth 6, 16 heads, MLP 2048
    python benchmarks/bench_planning.py --checkpoint runs/pusht_state_cjepa --dataset data/pusht/slots
    python benchmarks/bench_planning.py --iterations 5 --repeats 2   # quicker, for a loaded machine

Append ``--jsonl`` to store rows (device, versions, git SHA) under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ratio_table, time_fn, timing_row, write_rows  # noqa: E402

from cjepa.config import load_config  # noqa: E402
from cjepa.data.pusht import StateSlotEmbedding  # noqa: E402
from cjepa.data.windows import AuxNormalizer  # noqa: E402
from cjepa.envs.pusht import PushTEnv, sample_state, state_to_proprio  # noqa: E402
from cjepa.models.predictor import build_predictor  # noqa: E402
from cjepa.paths import config_path  # noqa: E402
from cjepa.plan.cem import CEM  # noqa: E402
from cjepa.plan.evaluate import run_episode  # noqa: E402
from cjepa.plan.matching import hungarian_reference, matched_mse  # noqa: E402
from cjepa.plan.mpc import MPCPlanner  # noqa: E402
from cjepa.plan.world_model import Goal, Observation, SlotWorldModel, StateSlotEncoder, build_world_model  # noqa: E402

PAPER_SIZE = ["model.slot_dim=128", "model.depth=6", "model.heads=16", "model.mlp_dim=2048"]


def make_models(args, cfg, device):
    """(batched, scipy) world models sharing one predictor."""
    if args.checkpoint:
        fast = build_world_model(args.checkpoint, cfg.plan, dataset=args.dataset, device=device,
                                 attention_backend=args.attention)
    else:  # random weights of the configured size: speed does not depend on the values
        torch.manual_seed(0)
        predictor = build_predictor(cfg.model, args.attention)
        norm = AuxNormalizer(np.array([256, 256, 0, 0], np.float32), np.array([100, 100, 100, 100], np.float32),
                             np.zeros(10, np.float32), np.full(10, 0.5, np.float32))
        encoder = StateSlotEncoder(StateSlotEmbedding(cfg.model.slot_dim, cfg.model.num_slots - 2), device)
        fast = SlotWorldModel(predictor, encoder, norm, action_block=cfg.plan.action_block, device=device)
    slow = SlotWorldModel(fast.predictor, fast.encoder, fast.normalizer, action_block=fast.action_block,
                          rollout_window=fast.rollout_window, matching="scipy", device=device)
    return fast, slow


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--paper-size", action="store_true", help="the paper's predictor size (128-d slots, depth 6)")
    ap.add_argument("--checkpoint", default="", help="a trained Push-T checkpoint instead of random weights")
    ap.add_argument("--dataset", default="", help="its state-slot store (with --checkpoint)")
    ap.add_argument("--attention", default="sdpa", help="kernels.attention backend for the predictor")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-episode", action="store_true", help="time matching and plans only")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default); 1 avoids "
                    "oversubscription on a loaded machine")
    ap.add_argument("--jsonl", nargs="?", const="", default=None, help="append result rows (optional path)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = (PAPER_SIZE if args.paper_size else []) + [f"plan.num_samples={args.samples}",
                                                           f"plan.iterations={args.iterations}", "data.path=unused"]
    cfg = load_config([str(config_path("pusht/state_slots.yaml"))], overrides)
    torch.set_grad_enabled(False)
    fast, slow = make_models(args, cfg, device)
    S, D = fast.num_slots, fast.encoder.slot_dim
    rng = np.random.default_rng(0)
    start, goal_state = sample_state(rng), sample_state(rng)
    obs = Observation(proprio=state_to_proprio(start[None]), state=start[None])
    goal = fast.encode_goal(Goal(proprio=state_to_proprio(goal_state), state=goal_state))
    nodes = fast.encode(obs)
    cand = torch.randn(args.samples, cfg.plan.horizon, fast.action_dim,
                       generator=torch.Generator().manual_seed(0)).to(device)

    # -- correctness first: same rollouts and costs
    traj_f, traj_s = fast.rollout(nodes, cand), slow.rollout(nodes, cand)
    torch.testing.assert_close(traj_f, traj_s)
    torch.testing.assert_close(fast.cost(traj_f, goal), slow.cost(traj_s, goal))
    last, goal_slots = traj_f[:, -1, :S], goal[:S].expand(args.samples, -1, -1)
    depth = len(fast.predictor.predictor.transformer.layers)
    print(f"device {device} ({torch.get_num_threads()} threads), {S} slots x {D}, predictor depth {depth}, "
          f"CEM {args.samples} samples x {args.iterations} iterations x horizon {cfg.plan.horizon}: outputs agree",
          flush=True)

    results, rows = {}, []
    # (1) matching alone
    match = {
        "batched permutations (ours)": lambda: matched_mse(last, goal_slots),
        "scipy per candidate (original)": lambda: hungarian_reference(last, goal_slots),
    }
    mt = {k: time_fn(f, device, warmup=2, repeats=max(5, args.repeats)) for k, f in match.items()}
    print("\nslot-matching cost of all candidates vs the goal")
    print(ratio_table(mt, "scipy per candidate (original)", unit_per_call=args.samples, unit_name="candidates/s"))
    rows += [{"case": "matching", "provider": k, "samples": args.samples, "slots": S, **timing_row(t)} for k,
             t in mt.items()]

    # (2) one CEM plan
    for name, wm in (("batched (ours)", fast), ("scipy per candidate (original)", slow)):
        cem = CEM.from_config(cfg.plan, seed=0, device=device)
        cost_fn = lambda c, wm=wm: wm.cost(wm.rollout(nodes, c), goal)  # noqa: E731
        solve = lambda cem=cem, cost_fn=cost_fn, wm=wm: cem.solve(cost_fn, cfg.plan.horizon,
                                                                  wm.action_dim)  # noqa: E731
        results[name] = time_fn(solve, device, warmup=1, repeats=args.repeats)
        print(f"  plan timed: {name} {results[name].median_ms / 1e3:.2f} s", flush=True)
    print("\none CEM plan")
    print(ratio_table(results, "scipy per candidate (original)"))
    rows += [{"case": "cem_plan", "provider": k, "samples": args.samples, "iterations": args.iterations,
              **timing_row(t)}
             for k, t in results.items()]

    # (3) one MPC episode: 50-step budget, replanning every receding horizon
    if not args.skip_episode:
        ep = {}
        env = PushTEnv(64)
        for name, wm in (("batched (ours)", fast), ("scipy per candidate (original)", slow)):
            planner = MPCPlanner(wm, CEM.from_config(cfg.plan, seed=0, device=device), horizon=cfg.plan.horizon,
                                 receding_horizon=cfg.plan.receding_horizon)
            t0 = time.perf_counter()
            res = run_episode(env, planner, start, goal_state, cfg.plan.budget)
            ep[name] = (time.perf_counter() - t0, res)
        print("\none MPC episode (50-step budget)")
        ref = ep["scipy per candidate (original)"][0]
        for name, (secs, res) in ep.items():
            print(f"  {name:32s} {secs:8.2f} s  ({res.plans} plans, {res.steps} steps)  speedup {ref / secs:.2f}x")
            rows.append({"case": "episode", "provider": name, "seconds": secs, "plans": res.plans, "steps": res.steps})
    if args.jsonl is not None:
        print(f"\nrows appended to {write_rows(rows, device, 'bench_planning', args.jsonl or None)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
