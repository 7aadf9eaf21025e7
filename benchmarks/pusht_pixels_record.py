"""Record a planning-from-pixels comparison (configs/pusht/pixels.yaml) as committed result rows.

    python benchmarks/pusht_pixels_record.py --encoder cues=runs/pusht_savi \\
        --model pixels=runs/pusht_pixels_cjepa --model state=runs/pusht_px_state_cjepa \\
        --plan pixels=runs/pusht_pixels_cjepa/plan --plan state=runs/pusht_px_state_cjepa/plan [--note TEXT]

Appends to ``benchmarks/results/pusht_pixels_<yyyymmdd>.jsonl``:

* ``kind: encoder`` per ``--encoder``: the final validation metrics (reconstruction loss, FG-ARI per video and per
  frame, mBO, slot swap rate against the ground-truth agent/block masks), steps and training wall time; for an
  interrupted run, its last validation (``finished: false``); every validation of the run in ``val_history``;
* ``kind: predictor`` per ``--model``: its final validation future loss, steps and training wall time;
* ``kind: plan`` per ``--plan`` (a ``cjepa plan`` output folder): per model evaluated there, the success rate per
  seed, mean, Student-t 95 % interval over seeds, the zero-action rate on the same pairs, the failure categories,
  the median time per plan, and the start/goal pairs (so two folders can be checked to hold the same pairs);
* ``kind: plan_combined`` per ``--combine``: one model's evaluations on disjoint seeds pooled (mean and 95 %
  interval over all their seeds).

Every row carries git SHA, machine, date and this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import record_provenance  # noqa: E402
from cjepa.utils.stats import mean_ci  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _summary(run: Path) -> dict:
    path = run / "summary.json"
    if not path.is_file():
        raise SystemExit(f"{run}: no summary.json (the run has not finished)")
    return json.loads(path.read_text())


ENCODER_METRICS = ("val/loss", "val/loss_recon", "val/fg_ari", "val/fg_ari_frame", "val/mbo", "val/swap_rate")


def encoder_row(name: str, run: Path) -> dict:
    """A finished encoder run's final validation; an interrupted one's last validation (``finished`` false), read
    from its metrics.jsonl, so that an attempt stopped early still counts as evidence."""
    path = run / "metrics.jsonl"
    vals = [r for r in map(json.loads, path.read_text().splitlines()) if "val/loss" in r] if path.is_file() else []
    history = [{"step": r["step"], **{k: r[k] for k in ENCODER_METRICS if k in r}} for r in vals]
    row = {"kind": "encoder", "name": name, "run": run.name, "val_history": history}
    if (run / "summary.json").is_file():
        s = _summary(run)
        return {**row, "finished": True, "steps": s["steps"], "wall_time_s": round(s["wall_time_s"], 1),
                **{k: s[k] for k in ENCODER_METRICS if k in s}}
    if not vals:
        raise SystemExit(f"{run}: neither summary.json nor a validation row in metrics.jsonl")
    last = vals[-1]
    return {**row, "finished": False, "steps": last["step"], **{k: last[k] for k in ENCODER_METRICS if k in last}}


def predictor_row(name: str, run: Path) -> dict:
    s = _summary(run)
    return {"kind": "predictor", "name": name, "run": run.name, "steps": s["steps"],
            "wall_time_s": round(s["wall_time_s"], 1), "val/loss_future": s.get("val/loss_future")}


def plan_rows(name: str, folder: Path) -> list[dict]:
    path = folder / "results.json"
    if not path.is_file():
        raise SystemExit(f"{folder}: no results.json (the evaluation has not finished)")
    res = json.loads(path.read_text())
    pc = res["config"]["plan"]
    rows = []
    for m in res["models"]:
        eps = [e for seed in m["episodes"].values() for e in seed]
        rows.append({
            "kind": "plan", "name": name, "model": m["name"], "encoder": pc["encoder"], "checkpoint": m["checkpoint"],
            "seeds": pc["seeds"], "episodes_per_seed": pc["episodes"], "workers": pc["workers"],
            "success_rate_per_seed": m["success_rate_per_seed"], "success_rate_mean": m["success_rate_mean"],
            "success_rate_ci95": m["success_rate_ci95"], "zero_action_success": res["zero_action_success"],
            "categories": dict(Counter(e["category"] for e in eps)),
            "plan_seconds_median": m["plan_seconds_median"],
            "pairs": {seed: [[e["key"], e["start"]] for e in ep] for seed, ep in m["episodes"].items()},
        })
    return rows


def combined_row(name: str, parts: list[str], plan: list[dict]) -> dict:
    """The per-seed success rates of the plan rows named ``parts`` (evaluations of one model on disjoint seeds,
    e.g. seed 0 and then seeds 1-2) pooled: mean and Student-t 95 % interval over all their seeds, and the mean
    zero-action rate over the same seeds."""
    rows = [r for r in plan if r["name"] in parts and r["model"] == "model"]
    if sorted(r["name"] for r in rows) != sorted(parts):
        raise SystemExit(f"--combine {name}: needs one plan row per name of {parts}, found {[r['name'] for r in rows]}")
    rates, zero = {}, []
    for r in rows:
        if rates.keys() & r["success_rate_per_seed"].keys():
            raise SystemExit(f"--combine {name}: seed(s) {sorted(rates.keys() & r['success_rate_per_seed'].keys())} "
                             "evaluated twice")
        rates.update(r["success_rate_per_seed"])
        zero += [r["zero_action_success"]] * len(r["success_rate_per_seed"])
    ci = mean_ci([rates[k] for k in sorted(rates, key=int)])
    return {"kind": "plan_combined", "name": name, "parts": parts, "success_rate_per_seed": rates,
            "success_rate_mean": ci.mean, "success_rate_ci95_half_width": ci.half_width,
            "zero_action_success_mean": sum(zero) / len(zero)}


def named(items: list[str], flag: str) -> list[tuple[str, Path]]:
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"{flag} {item!r}: give NAME=PATH")
        out.append((name, Path(path)))
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", action="append", default=[],
                   help="NAME=RUN_DIR of a pixel encoder run (finished, or interrupted: its last validation)")
    p.add_argument("--model", action="append", default=[], help="NAME=RUN_DIR of a trained predictor")
    p.add_argument("--plan", action="append", default=[], help="NAME=FOLDER of a finished `cjepa plan` output")
    p.add_argument("--combine", action="append", default=[],
                   help="NAME=PLAN1+PLAN2: pool the seeds of --plan rows of one model (disjoint seeds)")
    p.add_argument("--note", default="")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    prov = record_provenance("pusht_pixels", "benchmarks/pusht_pixels_record.py", argv)
    rows = [encoder_row(n, r) for n, r in named(args.encoder, "--encoder")]
    rows += [predictor_row(n, r) for n, r in named(args.model, "--model")]
    plan = [r for n, folder in named(args.plan, "--plan") for r in plan_rows(n, folder)]
    rows += plan
    rows += [combined_row(n, str(parts).split("+"), plan) for n, parts in named(args.combine, "--combine")]
    out = args.out or RESULTS / f"pusht_pixels_{datetime.now(timezone.utc):%Y%m%d}.jsonl"
    with out.open("a") as fh:
        for r in rows:
            fh.write(json.dumps({**prov, "note": args.note, **r}) + "\n")
    print(f"{len(rows)} rows -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
