"""Table of the oracle diagnosis records (benchmarks/oracle_diagnosis.py output), for the report.

python benchmarks/oracle_summary.py benchmarks/results/oracle/oracle_runs.jsonl benchmarks/results/oracle/solve.jsonl

``--combine`` instead joins the oracle records of one run split over processes (the same data, cost, CEM,
seed and ``--episodes`` draw; ``--skip`` / ``--limit`` ranges) into one row per configuration and seed, with
the pairs covered, the success count, the categories and the per-episode wall time of the planning;
``--out FILE`` also writes those rows as JSONL (the source records' commit, machine and latest date with each), so
that documents can cite the combined counts:

python benchmarks/oracle_summary.py --combine benchmarks/results/oracle/oracle_runs.jsonl \
    --out benchmarks/results/oracle/oracle_combined.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.records import join_by_pair  # noqa: E402


def _arg(argv: list[str], flag: str, default: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv else default


def _config(r: dict) -> tuple:
    argv = r["argv"]
    return (_arg(argv, "--dataset", "?"), r["cost"], r.get("proprio_weight"), r["samples"], r.get("topk", 30),
            r["iterations"], r.get("var_scale", 1.0), r.get("goal_offset", 25), int(_arg(argv, "--episodes", "10")),
            r["git_sha"],  # split jobs of one run start from one commit (a store regenerated later may differ)
            r.get("final_weight", 0.0), r.get("agent_weight", 1.0), r.get("mean_weight", 0.0),
            r.get("cem_stream", "shared"), r.get("success_first", False), r.get("agent_weight_placed"),
            r.get("placed_first", False))


def _pair_indices(record: dict) -> list[int]:
    """The drawn pairs a record planned: named per episode, or (older records) its --skip range."""
    if all("index" in e for e in record["per_episode"]):
        return [int(e["index"]) for e in record["per_episode"]]
    skip = record.get("skip", 0)
    return list(range(skip, skip + len(record["per_episode"])))


def combine(records: list[dict]) -> list[dict]:
    """Oracle records split over processes -> one row per (configuration, commit, seed); overlapping ranges are
    an error."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if r["kind"] == "oracle":
            groups.setdefault((_config(r), r["seed"]), []).append(r)
    rows = []
    for (cfg, seed), recs in groups.items():
        joined = join_by_pair(((_pair_indices(r), r["per_episode"]) for r in recs), f"records of {cfg} seed {seed}")
        covered, episodes = joined.keys(), list(joined.values())
        cats = dict(Counter(e["category"] for e in episodes))
        rows.append({"dataset": cfg[0], "cost": cfg[1], "final_weight": cfg[10], "agent_weight": cfg[11],
                     "mean_weight": cfg[12], "cem_stream": cfg[13], "success_first": cfg[14],
                     "agent_weight_placed": cfg[15], "placed_first": cfg[16], "samples": cfg[3],
                     "iterations": cfg[5], "seed": seed,
                     "drawn": cfg[8], "covered": len(covered), "solved": sum(e["success"] for e in episodes),
                     "categories": cats, "git_sha": cfg[9], "machine": recs[0].get("machine"),
                     "date_utc": max(str(r.get("date_utc", "")) for r in recs),
                     "plan_seconds_per_episode": sum(e["plan_seconds"] for e in episodes) / len(episodes)})
    return rows


def main(paths: list[str]) -> int:
    if paths and paths[0] == "--combine":
        out = None
        if "--out" in paths:
            i = paths.index("--out")
            out, paths = paths[i + 1], paths[:i] + paths[i + 2:]
        records = [json.loads(line) for path in paths[1:] for line in open(path)]
        rows = combine(records)
        if out:
            with open(out, "w") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in rows)
        for r in rows:
            print(f"{r['dataset']} cost={r['cost']} final_w={r['final_weight']} agent_w={r['agent_weight']} "
                  f"mean_w={r['mean_weight']} placed_w={r['agent_weight_placed']} placed_first={r['placed_first']} "
                  f"success_first={r['success_first']} "
                  f"{r['cem_stream']} stream "
                  f"CEM {r['samples']}x{r['iterations']} "
                  f"seed {r['seed']}: "
                  f"{r['solved']}/{r['covered']} solved (of {r['drawn']} drawn); {r['categories']}; "
                  f"{r['plan_seconds_per_episode']:.0f} s planning per episode [{r['git_sha'][:7]}]")
        return 0
    for path in paths:
        for line in open(path):
            r = json.loads(line)
            if r["kind"] not in ("oracle", "solve"):
                continue
            argv = r["argv"]
            data = _arg(argv, "--dataset", "?").rstrip("/").split("/")[-2:][0]  # <root>/slots -> <root>
            cfg = (f"{data} cost={r['cost']} agent_w={r.get('agent_weight', 1.0)} proprio_w={r.get('proprio_weight')} "
                   f"samples={r['samples']} "
                   f"iters={r['iterations']} var={_arg(argv, '--var-scale', '1.0')}")
            if r.get("embedding_cycles"):
                cfg += f" cycles={r['embedding_cycles']}"
            if r["kind"] == "oracle":
                rows = r["per_episode"]
                print(f"oracle  {cfg}: {sum(x['success'] for x in rows)}/{len(rows)} solved "
                      f"({r['success_rate']:.0f} %){' PARTIAL' if r.get('partial') else ''}; {r['categories']} "
                      f"[{r['git_sha'][:7]}]")
            elif r["kind"] == "solve":
                rows = r["per_episode"]
                gap = [x["plan_model_cost"] - x["expert_model_cost"] for x in rows]
                print(f"solve   {cfg}: first plan at the goal after 25 steps {r['plan_success_at_end']}/{len(rows)}; "
                      f"plan cost - expert-actions cost: {', '.join(f'{g:.4f}' for g in gap)} [{r['git_sha'][:7]}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
