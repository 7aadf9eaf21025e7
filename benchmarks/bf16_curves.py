"""bf16 against fp32 over the demo's whole SAVi training: does bf16 autocast cost accuracy at the demo's steps?

For each seed the demo's encoder (``configs/world/demo_encoder.yaml``: 500 two-frame steps, lr 1e-3) is trained
twice on one render of the demo world, with ``train.precision=fp32`` and ``train.precision=bf16``: the same data
order, initial weights and slot noise, only the precision differs. Each run gives its training-loss curve (every
``train.log_every`` steps), its final loss (the mean of the last ``--tail`` logged losses) and the validation of
its last step (FG-ARI of 6-frame held-out clips, over the video and per frame). The verdict compares what bf16
changes for a seed with how much fp32 itself varies over the seeds (max - min): within that spread, bf16 is
within noise. ``tests/test_bf16_curves.py`` checks the same on short runs in the test suite.

    python benchmarks/bf16_curves.py --seeds 0 1 2 --root runs/bf16_curves --save
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, write_rows  # noqa: E402

from cjepa.demo_pipeline import demo_configs, render_world  # noqa: E402
from cjepa.trainer import train  # noqa: E402
from cjepa.utils.report import table  # noqa: E402

PRECISIONS = ("fp32", "bf16")
FIGURES = ("final_loss", "val_loss", "clip_fg_ari", "clip_fg_ari_per_frame")


def curve(run_dir: Path) -> tuple[list[int], list[float]]:
    """(steps, training losses) as the run logged them."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [r for r in rows if "train/loss" in r]
    return [r["step"] for r in logged], [r["train/loss"] for r in logged]


def one_run(root: Path, precision: str, seed: int, train_videos: int, val_videos: int, tail: int) -> dict:
    out = root / precision / f"s{seed}"
    world = root / "world"
    cfg, _ = demo_configs(out, False, [f"run.seed={seed}", f"train.precision={precision}",
                                       f"encoder.data.path={world}"], [], [])
    render_world(cfg, world, {"train": train_videos, "val": val_videos}, progress=False)
    t = time.time()
    summary = train(cfg, progress=False)
    steps, losses = curve(out / "encoder")
    final = summary.get("final_eval", {})
    return {"precision": precision, "seed": seed, "steps": steps, "losses": losses,
            "final_loss": statistics.fmean(losses[-tail:]), "clip_fg_ari": final.get("fg_ari"),
            "clip_fg_ari_per_frame": final.get("fg_ari_frame"), "val_loss": final.get("loss"),
            "train_s": time.time() - t,
            "max_steps": cfg.train.max_steps, "train_videos": train_videos, "val_videos": val_videos}


def verdict(rows: list[dict], figure: str) -> dict:
    """fp32's spread over seeds and the largest change bf16 makes to one seed, for one figure."""
    by = {(r["precision"], r["seed"]): r[figure] for r in rows if r.get(figure) is not None}
    seeds = sorted({s for p, s in by if p == "fp32"} & {s for p, s in by if p == "bf16"})
    fp32 = [by["fp32", s] for s in seeds]
    spread = max(fp32) - min(fp32) if len(fp32) > 1 else None
    change = max(abs(by["bf16", s] - by["fp32", s]) for s in seeds) if seeds else None
    return {"figure": figure, "seeds": seeds, "fp32_spread": spread, "bf16_max_change": change,
            "within_noise": None if spread is None or change is None else change <= spread}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--root", default="runs/bf16_curves", help="runs and the shared world render go here")
    p.add_argument("--train-videos", type=int, default=64, help="the demo's default")
    p.add_argument("--val-videos", type=int, default=16, help="the demo's default")
    p.add_argument("--tail", type=int, default=4, help="final loss: mean of this many last logged losses")
    p.add_argument("--note", default="", help="stored with every row (e.g. how loaded the machine was)")
    p.add_argument("--save", action="store_true", help="append rows to benchmarks/results/bf16_<date>.jsonl")
    args = p.parse_args(argv)
    root = Path(args.root)
    out = ROOT / "benchmarks" / "results" / f"bf16_{time.strftime('%Y%m%d', time.gmtime())}.jsonl"
    command = "python benchmarks/bf16_curves.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    for seed in args.seeds:
        for precision in PRECISIONS:  # a finished run (same root) resumes at its end: only its figures are read
            rows.append({**one_run(root, precision, seed, args.train_videos, args.val_videos, args.tail),
                         "note": args.note})
            print(f"seed {seed} {precision}: final loss {rows[-1]['final_loss']:.5f}, "
                  f"clip FG-ARI {rows[-1]['clip_fg_ari']}", flush=True)
            if args.save:  # as each run ends: a long comparison stopped half-way keeps what it measured
                write_rows([{**rows[-1], "command": command}], torch.device("cpu"), "bf16_curve", str(out))
    verdicts = [verdict(rows, f) for f in FIGURES]
    print(table([[v["figure"], v["fp32_spread"], v["bf16_max_change"], v["within_noise"]] for v in verdicts],
                ["figure", "fp32 spread over seeds", "largest bf16 change of a seed", "within noise"]))
    if args.save:
        write_rows([{**v, "command": command, "note": args.note} for v in verdicts], torch.device("cpu"),
                   "bf16_curve_verdict", str(out))
        print(f"rows appended to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
