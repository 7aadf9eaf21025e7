"""One planner setting over several training seeds: success per model and the spread across them.

``benchmarks/planner_diagnosis.py episodes`` writes one record per process, and a 50-pair evaluation is
usually split over processes (``--episodes 10 --skip 0``, ``--skip 10``, ...). This joins, for each model
(``--models``: the run names, i.e. the records' ``checkpoint_name``), the records of one planner setting (the
protocol's CEM and cost, evaluation seed ``--seed``, optionally one ``--precision``) into
the pairs it covered, checks that they cover the first ``--pairs`` pairs of the draw, each once (pairs beyond
are left out), and reports:

* per model: pairs solved, the failure categories and plan outcomes;
* across models: the mean success rate with the Student-t 95 % interval over the models (training seeds;
  ``cjepa.utils.stats.mean_ci``), the pooled count with its Wilson interval (every episode an independent
  draw: narrower, and blind to seed-to-seed spread), and how many pairs 0, 1, ... of the models solve.

python benchmarks/planner_seeds.py --label "OC-JEPA, 256 wide" --precision bf16 \\
    --models pusht_branch_w4_w256d4_oc pusht_wide_ocjepa_s1 pusht_wide_ocjepa_s2 \\
    --out benchmarks/results/planner/training_seeds.jsonl

``--against`` names a second group of models planned on the same pairs (another recipe's training seeds) and
adds a comparison: the difference of the mean rates with Welch's t-interval over models, and a sign test over
the pairs that one group solves more often than the other.

``--runs DIR`` adds to each model row what its run directory ``DIR/<model>`` says about its training (seed,
masked slots, steps, wall time, final validation future loss, held-out rollout MSE per step).

``--out`` appends one row per model, one summary row and, with ``--against``, one comparison row (``kind``:
``model`` / ``summary`` / ``comparison``), each with the commit, machine and date of this summary and the commits
of the records it read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.oracle_diagnosis import append_record, provenance  # noqa: E402
from benchmarks.records import join_by_pair  # noqa: E402
from cjepa.utils.stats import mean_ci, welch_difference, wilson_interval  # noqa: E402

# What makes two episodes records one planner setting (besides the model): planner_diagnosis.py's record fields.
SETTING_KEYS = ("seed", "cost_frames", "agent_weight", "proprio_weight", "cem_samples", "cem_iterations",
                "receding_horizon", "precision")
PROTOCOL = {"seed": 0, "cost_frames": "final", "agent_weight": 1.0, "proprio_weight": 1.0, "cem_samples": 300,
            "cem_iterations": 30, "receding_horizon": 5}


def setting_of(record: dict) -> dict:
    return {k: record.get(k) for k in SETTING_KEYS}


def model_records(records: list[dict], model: str, setting: dict) -> list[dict]:
    """The single-model episodes records of ``model`` whose setting matches ``setting`` (keys given)."""
    return [r for r in records
            if r.get("kind") == "episodes" and r.get("checkpoint_name") == model and not r.get("ensemble")
            and all(r.get(k) == v for k, v in setting.items())]


def combine_model(records: list[dict], model: str, pairs: int) -> dict:
    """Join one model's records into its episodes on pairs 0 .. pairs-1 of the draw (pairs beyond are left out);
    a pair in two records or a missing pair is an error naming it."""
    if not records:
        raise ValueError(f"no episodes records of model {model!r} with that setting")
    settings = {json.dumps(setting_of(r), sort_keys=True) for r in records}
    if len(settings) > 1:
        raise ValueError(f"model {model!r}: records of different settings {sorted(settings)}; narrow the selection")
    by_index = join_by_pair((([int(e["index"]) for e in r["per_episode"]], r["per_episode"]) for r in records),
                            f"model {model!r}")
    missing = sorted(set(range(pairs)) - set(by_index))
    if missing:
        raise ValueError(f"model {model!r}: records must cover pairs 0..{pairs - 1}; missing {missing}")
    episodes = [by_index[i] for i in range(pairs)]
    categories = dict(Counter(e["category"] for e in episodes))
    outcomes = dict(Counter(plan["outcome"] for e in episodes for plan in e.get("plans", [])))
    solved = [i for i, e in enumerate(episodes) if e["success"]]
    return {"model": model, "setting": setting_of(records[0]), "pairs": pairs, "solved": len(solved),
            "success_rate": 100.0 * len(solved) / pairs, "solved_pairs": solved, "categories": categories,
            "plan_outcomes": outcomes, "record_shas": sorted({r["git_sha"] for r in records}),
            "wall_seconds_of_records": sum(float(r.get("wall_seconds", 0.0)) for r in records)}


def training_of(run_dir: Path) -> dict:
    """What a model's run directory says about its training: seed, masked slots, steps, wall time, the final
    validation future loss and held-out rollout MSE per step (``summary.json`` and ``config.yaml`` of
    ``cjepa train``)."""
    import yaml

    summary_file, config_file = run_dir / "summary.json", run_dir / "config.yaml"
    for f in (summary_file, config_file):
        if not f.is_file():
            raise ValueError(f"{f} is missing: --runs must hold each model's finished run directory")
    summary, config = json.loads(summary_file.read_text()), yaml.safe_load(config_file.read_text())
    return {"run_seed": config["run"]["seed"], "num_masked": config["masking"]["num_masked"],
            "steps": summary["steps"], "wall_time_s": summary.get("wall_time_s"),
            "val_loss_future": summary.get("val/loss_future"),
            "rollout_mse": summary.get("final_eval", {}).get("mse")}


def solvers_per_pair(rows: list[dict]) -> list[int]:
    """For each of the models' common pairs, how many of the models solve it."""
    return [sum(i in r["solved_pairs"] for r in rows) for i in range(rows[0]["pairs"])]


def summarise(rows: list[dict]) -> dict:
    """Across models: mean and t-interval of the rates, pooled count and Wilson interval, and how many pairs are
    solved by 0, 1, ..., len(rows) of the models."""
    if len({r["pairs"] for r in rows}) != 1:
        raise ValueError("the models cover different numbers of pairs")
    pairs = rows[0]["pairs"]
    ci = mean_ci([r["success_rate"] for r in rows])
    solved, episodes = sum(r["solved"] for r in rows), pairs * len(rows)
    lo, hi = wilson_interval(solved, episodes)
    solved_by = Counter(solvers_per_pair(rows))
    return {"models": [r["model"] for r in rows], "rates": [r["success_rate"] for r in rows],
            "mean": ci.mean, "t95_half_width": ci.half_width, "t95": [ci.low, ci.high],
            "solved": solved, "episodes": episodes, "pooled_rate": 100.0 * solved / episodes,
            "wilson95": [100.0 * lo, 100.0 * hi],
            "pairs_solved_by": {str(k): solved_by[k] for k in range(len(rows) + 1)}}


def compare(rows: list[dict], against: list[dict]) -> dict:
    """One group of models against another on the same pairs: the difference of their mean rates with Welch's
    t-interval over the models (training seeds), and a sign test over pairs: a pair counts for a group when
    more of its models solve it, so easy and hard pairs weigh alike and ties say nothing."""
    from scipy.stats import binomtest

    if {r["pairs"] for r in rows} != {r["pairs"] for r in against}:
        raise ValueError("the two groups cover different numbers of pairs")
    diff = welch_difference([r["success_rate"] for r in rows], [r["success_rate"] for r in against])
    pairs = rows[0]["pairs"]
    margins = [mine / len(rows) - theirs / len(against)
               for mine, theirs in zip(solvers_per_pair(rows), solvers_per_pair(against))]
    better, worse = sum(m > 0 for m in margins), sum(m < 0 for m in margins)
    sign_p = binomtest(better, better + worse).pvalue if better + worse else 1.0
    return {"models": [r["model"] for r in rows], "against": [r["model"] for r in against],
            "mean_difference": diff.difference, "welch95": [diff.low, diff.high], "welch_p": diff.p_value,
            "pairs_better": better, "pairs_worse": worse, "pairs_tied": pairs - better - worse,
            "sign_test_p": float(sign_p)}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", default="benchmarks/results/planner/episodes.jsonl")
    p.add_argument("--models", nargs="+", required=True, help="run names (the records' checkpoint_name)")
    p.add_argument("--pairs", type=int, default=50, help="the first PAIRS pairs of the draw, each model")
    p.add_argument("--seed", type=int, default=0, help="the evaluation seed whose draw of pairs the records planned")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="only records planned in this precision")
    p.add_argument("--label", default="", help="what the models are, for the rows")
    p.add_argument("--against", nargs="+", default=[],
                   help="run names of a second group (e.g. the other recipe's seeds) to compare --models with")
    p.add_argument("--runs", help="folder of the models' run directories: each model row then carries its training "
                                  "(seed, masked slots, steps, wall time, final validation loss, rollout MSE)")
    p.add_argument("--out", help="JSONL file the rows are appended to")
    args = p.parse_args(argv)

    records = [json.loads(line) for line in open(args.records) if line.strip()]
    setting = {**PROTOCOL, "seed": args.seed}
    if args.precision:
        setting["precision"] = args.precision
    try:
        def joined(models: list[str]) -> list[dict]:
            return [combine_model(model_records(records, m, setting), m, args.pairs) for m in models]

        rows = joined(args.models)
        if args.runs:
            rows = [{**r, "training": training_of(Path(args.runs) / r["model"])} for r in rows]
        summary = summarise(rows)
        against = joined(args.against)
        comparison = compare(rows, against) if against else None
    except ValueError as e:
        print(f"planner_seeds: {args.records}: {e}", file=sys.stderr)
        return 2
    for r in rows:
        print(f"{r['model']}: {r['solved']}/{r['pairs']} ({r['success_rate']:.1f} %); {r['categories']}; "
              f"plans {r['plan_outcomes']}")
    s = summary
    spread = "no interval" if s["t95_half_width"] is None else f"+- {s['t95_half_width']:.1f}"
    print(f"{args.label or 'models'}: mean {s['mean']:.1f} % over {len(rows)} models (t 95 %: {spread}); pooled "
          f"{s['solved']}/{s['episodes']} = {s['pooled_rate']:.1f} % (Wilson 95 %: {s['wilson95'][0]:.1f}-"
          f"{s['wilson95'][1]:.1f} %); pairs solved by k models: {s['pairs_solved_by']}")
    c = comparison
    if c:
        print(f"against {', '.join(c['against'])}: {c['mean_difference']:+.1f} points (Welch 95 %: "
              f"{c['welch95'][0]:+.1f} to {c['welch95'][1]:+.1f}, p = {c['welch_p']:.2f}); pairs better "
              f"{c['pairs_better']}, worse {c['pairs_worse']}, tied {c['pairs_tied']} (sign test p = "
              f"{c['sign_test_p']:.2f})")
    if args.out:
        prov = provenance(["planner_seeds.py", *argv])
        for r in rows:
            append_record(args.out, {**prov, "kind": "model", "label": args.label, **r})
        append_record(args.out, {**prov, "kind": "summary", "label": args.label, "setting": rows[0]["setting"],
                                 **summary})
        if c:
            append_record(args.out, {**prov, "kind": "comparison", "label": args.label, **c})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
