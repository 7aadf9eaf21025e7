"""The VQA reasoner's ceiling on the built-in billiards world: per question type, against the answer priors.

Writes (or reuses) a billiards VQA world with its oracle stores (``cjepa vqa make-billiards --oracle``: true
slots of every simulated frame, the simulator's re-run without each object), trains the ALOE reasoner from
``configs/billiards/vqa_demo.yaml`` plus the given overrides under ``vqa.protocol`` (default ``oracle``),
and appends one JSONL row to ``benchmarks/results/vqa_ceiling_<yyyymmdd>.jsonl``: git SHA, machine, date, the
command, the reasoner's config, its per-type accuracies on the val questions (mean over evaluation offsets),
and the prior baseline (the most frequent training answer per descriptive subtype / multiple-choice type) on
the same questions -- an accuracy at the prior means the reasoner learnt nothing from the slots.

    python benchmarks/vqa_ceiling.py --world runs/vqa_ceiling/world --train 1024 --val 256 \\
        vqa.frame_sampling=span vqa.num_frames=16 vqa.epochs=30
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cjepa.utils.report import table  # noqa: E402

TYPES = ("descriptive", "explanatory", "predictive", "counterfactual")
REPORTED = (
    "descriptive",
    "explanatory_per_option",
    "explanatory_per_question",
    "predictive_per_option",
    "predictive_per_question",
    "counterfactual_per_option",
    "counterfactual_per_question",
    "overall",
)


def prior_metrics(train_scenes: list[dict], val_scenes: list[dict]) -> dict[str, float]:
    """Accuracies of answering every val question with the most frequent training answer of its kind
    (descriptive: per subtype; multiple choice: one label per type for every choice)."""
    from cjepa.eval.vqa.metrics import empty_counts, metrics_from_counts
    from cjepa.eval.vqa.questions import TYPE_ID

    freq: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for s in train_scenes:
        for q in s["questions"]:
            if q["question_type"] == "descriptive":
                freq["descriptive/" + q.get("question_subtype", "")][q["answer"]] += 1
            else:
                freq[q["question_type"]].update(c["answer"] for c in q["choices"])
    best = {k: c.most_common(1)[0][0] for k, c in freq.items()}
    counts = empty_counts()
    for s in val_scenes:
        for q in s["questions"]:
            t = TYPE_ID[q["question_type"]]
            if q["question_type"] == "descriptive":
                ok = best.get("descriptive/" + q.get("question_subtype", "")) == q["answer"]
                counts[t] += (1, ok, 1, ok)
            else:
                right = sum(best.get(q["question_type"]) == c["answer"] for c in q["choices"])
                counts[t] += (1, right == len(q["choices"]), len(q["choices"]), right)
    return metrics_from_counts(counts)


def ensure_world(world: Path, args) -> dict:
    """The world's question counts; written first if ``world`` holds none (same arguments -> same world)."""
    from cjepa.data.billiards_vqa import write_billiards_vqa

    spec = {k: getattr(args, k) for k in ("train", "val", "observed", "total", "slots", "slot_dim", "min_objects", "max_objects", "seed")}
    marker = world / "ceiling_world.json"
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved["spec"] != spec:
            raise SystemExit(f"{world} holds another world {saved['spec']}; asked for {spec}: use another --world")
        return saved
    t0 = time.time()
    summary = write_billiards_vqa(
        world, {"train": args.train, "val": args.val}, num_slots=args.slots, slot_dim=args.slot_dim, observed_frames=args.observed,
        total_frames=args.total, min_objects=args.min_objects, max_objects=args.max_objects, seed=args.seed, oracle=True,
    )
    saved = {"spec": spec, "summary": summary, "seconds": round(time.time() - t0, 1)}
    marker.write_text(json.dumps(saved))
    return saved


def reasoner_config(world: Path, run_dir: Path, args, overrides: list[str]):
    from cjepa.config import load_config
    from cjepa.paths import config_path

    cfg = load_config([str(config_path("billiards/vqa_demo.yaml"))], overrides)
    v = cfg.vqa
    v.questions_train, v.questions_val = str(world / "questions" / "train.json"), str(world / "questions" / "val.json")
    v.annotations = str(world / "annotations.json")
    oracle = v.protocol == "oracle"
    v.slots = str(world / "oracle" / "slots") if oracle else str(world / "slots")
    if oracle:
        v.cf_slots = str(world / "oracle" / "counterfactual")
    elif v.protocol != "original":
        raise SystemExit(f"vqa.protocol={v.protocol}: this benchmark runs oracle or original (observed slots only)")
    if not oracle:
        v.video_len = args.observed  # no rollout: predictive questions read the last observed frames
    cfg.run.out_dir, cfg.run.name = str(run_dir.parent), run_dir.name
    return cfg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", default="runs/vqa_ceiling/world", help="world directory (written if empty)")
    p.add_argument("--runs", default="runs/vqa_ceiling", help="reasoner run directories go here")
    p.add_argument("--train", type=int, default=1024, help="training scenes")
    p.add_argument("--val", type=int, default=256, help="validation scenes")
    p.add_argument("--observed", type=int, default=48, help="observed frames (as the demo's rollout.obs_frames)")
    p.add_argument("--total", type=int, default=64, help="simulated frames (as the demo's rollout.target_frames)")
    p.add_argument("--slots", type=int, default=7)
    p.add_argument("--slot-dim", type=int, default=64)
    p.add_argument("--min-objects", type=int, default=3)
    p.add_argument("--max-objects", type=int, default=6)
    p.add_argument("--seed", type=int, default=0, help="world seed")
    p.add_argument("--name", default="", help="run name (default: from the overrides)")
    p.add_argument("--note", default="", help="stored with the row (e.g. how loaded the machine was)")
    p.add_argument("--out", default="", help="JSONL to append to (default benchmarks/results/vqa_ceiling_<yyyymmdd>.jsonl)")
    p.add_argument("overrides", nargs="*", help="config overrides on configs/billiards/vqa_demo.yaml (vqa.protocol=oracle is the default)")
    a = p.parse_args(argv)

    import torch

    from cjepa.eval.vqa.questions import load_question_file
    from cjepa.eval.vqa.task import train_reasoner
    from cjepa.utils.run_dir import git_info

    overrides = ["vqa.protocol=oracle", "run.seed=0", *a.overrides]
    world = Path(a.world)
    w = ensure_world(world, a)
    name = a.name or ("ceiling_" + "_".join(o.split(".")[-1].replace("=", "") for o in a.overrides) if a.overrides else "ceiling")
    run_dir = Path(a.runs) / name
    cfg = reasoner_config(world, run_dir, a, overrides)
    t0 = time.time()
    summary = train_reasoner(cfg, progress=False)
    seconds = time.time() - t0
    fe = summary["final_eval"]
    prior = prior_metrics(load_question_file(cfg.vqa.questions_train), load_question_file(cfg.vqa.questions_val))
    row = {
        "benchmark": "vqa_ceiling",
        "git_sha": git_info()["sha"],
        "git_dirty": git_info()["dirty"],
        "machine": f"{platform.node()} {platform.machine()} ({os.cpu_count()} cpus, {torch.get_num_threads()} torch threads)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/vqa_ceiling.py " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])),
        "note": a.note,
        "world": w["spec"],
        "world_questions": w["summary"],
        "config": {"vqa": {k: getattr(cfg.vqa, k) for k in (
            "protocol", "frame_sampling", "video_len", "num_frames", "word_dim", "heads", "depth", "ffn_dim", "dropout", "lr",
            "batch_size", "epochs", "max_steps", "warmup_frac", "min_lr_ratio", "grad_clip")}, "run.seed": cfg.run.seed},
        "steps": summary.get("steps"),
        "train_seconds": round(seconds, 1),
        "metrics": {k: fe["metrics"].get(k) for k in REPORTED},
        "metrics_std_over_offsets": {k: fe["metrics_std"].get(k) for k in REPORTED},
        "prior": {k: prior.get(k) for k in REPORTED},
        "val_questions": {t: fe["metrics"].get(f"{t}_questions") for t in TYPES},
        "run_dir": str(run_dir),
    }
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"vqa_ceiling_{time.strftime('%Y%m%d')}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as fh:
        fh.write(json.dumps(row) + "\n")

    def pct(x):
        return "-" if x is None or x != x else f"{100 * x:.1f}"

    print(table([(k, pct(row["metrics"][k]), pct(row["prior"][k])) for k in REPORTED], ["metric (%)", cfg.vqa.protocol, "prior"]))
    print(f"\n{seconds:.0f} s training; row appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
