"""cjepa demo: the newcomer's first command.

Runs the whole chain on the built-in world, on a CPU, in minutes: render physics-world videos, train a small
SAVi encoder, extract slots, train the C-JEPA predictor with object-level masking, and measure rollout error on
held-out videos against the copy-last-frame baseline, then decode a few held-out rollouts back to frames with
SAVi's decoder (per-step PSNR / SSIM / FG-ARI / mIoU, mp4 clips, tensorboard). Ends with a summary table
(segmentation FG-ARI, losses, rollout error, stage times), the decoded-rollout line and the tensorboard command.
Re-running resumes every stage.

``--slots`` runs the quicker variant without video: the built-in slot world (object states embedded into
slots) straight into the predictor.
"""

from __future__ import annotations

import sys
import time

from cjepa.cli import add_config_args
from cjepa.utils.report import print_train_summary, table


def add_arguments(p) -> None:
    add_config_args(p)
    p.add_argument("--out", default="runs/demo", help="directory for every stage's outputs (default runs/demo)")
    p.add_argument("--full", action="store_true",
                   help="the bigger run: more videos, longer training (tens of minutes on CPU)")
    p.add_argument("--slots", action="store_true",
                   help="skip video: train the predictor on the built-in slot world (fastest)")
    p.add_argument("--train-videos", type=int, default=None,
                   help="world videos to train on (default 64; 256 with --full)")
    p.add_argument("--val-videos", type=int, default=None, help="held-out world videos (default 16; 48 with --full)")
    p.add_argument("--seed", type=int, default=None,
                   help="run.seed of the encoder and the predictor (default: the configs')")
    p.add_argument("--encoder", action="append", default=[], metavar="key=value",
                   help="override for the encoder stage (repeatable)")
    p.add_argument("--decode-videos", type=int, default=8,
                   help="held-out rollouts decoded back to frames and scored at the end (default 8; 0 skips it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _rollout_rows(fe: dict) -> list[tuple]:
    pred = sum(fe["mse"]) / len(fe["mse"])
    base = sum(fe["baseline_mse"]) / len(fe["baseline_mse"])
    ratios = [p / b for p, b in zip(fe["mse"], fe["baseline_mse"])]
    return [
        ("rollout MSE, predictor (mean over steps)", pred),
        ("rollout MSE, copy-last-frame baseline", base),
        ("predictor / baseline", pred / base),
        ("predictor / baseline, worst rollout step", max(ratios)),
    ]


def demo_record(res, fe: dict, wall_s: float) -> dict:
    """The demo's figures with provenance (git SHA, machine, date): what README numbers are copied from."""
    import platform
    from datetime import datetime, timezone

    from cjepa.utils.run_dir import git_info

    val = next((s for s in res.extract if s["split"] == "val"), {})
    return {
        "git": git_info(),
        "machine": f"{platform.machine()} {platform.processor()} ({__import__('os').cpu_count()} cpus)",
        "torch": __import__("torch").__version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "encoder_val_clips": res.encoder.get("final_eval", {}), "video_fg_ari": val.get("fg_ari"),
        "video_swap_rate": val.get("swap_rate"), "rollout_mse": fe["mse"], "baseline_mse": fe["baseline_mse"],
        "ratio_per_step": [p / b for p, b in zip(fe["mse"], fe["baseline_mse"])],
        "ratio_mean": (sum(fe["mse"]) / len(fe["mse"])) / (sum(fe["baseline_mse"]) / len(fe["baseline_mse"])),
        "decoded_rollouts": res.decoded, "stage_s": res.stage_s, "wall_s": wall_s,
    }


def _verdict(fe: dict, encoder: dict | None = None, swap_rate: float | None = None) -> str:
    """One honest paragraph: does the predictor beat copy-last, at which rollout steps, and what limits it."""
    mse, base = fe["mse"], fe["baseline_mse"]
    pred_mean, base_mean = sum(mse) / len(mse), sum(base) / len(base)
    lines = [f"The predictor {'beats' if pred_mean < base_mean else 'does NOT beat'} the copy-last-frame baseline on "
             f"held-out rollouts (mean over steps: {pred_mean / base_mean:.2f}x its error)."]
    wins = [i + 1 for i, (p, b) in enumerate(zip(mse, base)) if p < b]
    if 0 < len(wins) < len(mse):
        lines.append(f"It is better at {len(wins)} of {len(mse)} rollout steps (steps {', '.join(map(str, wins))}).")
    elif len(wins) == len(mse):
        lines.append(f"It is better at every rollout step (worst step {max(p / b for p, b in zip(mse, base)):.2f}x).")
    if swap_rate is not None:
        lines.append(
            f"Slots swap objects in {100 * swap_rate:.1f}% of held-out frames: "
            + ("few enough that the comparison measures learned dynamics." if swap_rate < 0.05 else
               "a swap makes the true next slot jump, which neither copy-last nor a predictor can foresee, so read "
               "the ratio with care.")
        )
    video_ari = (encoder or {}).get("fg_ari")
    if video_ari is not None and video_ari < 0.3:
        lines.append(
            f"The encoder's slots do not follow objects yet (video FG-ARI {video_ari:.2f}): this budget is far below "
            "what "
            "SAVi needs to bind objects, and a predictor over region-like slots has little object dynamics to learn. "
            "Train the encoder longer (--full, or on a GPU) for object slots."
        )
    return "\n".join(lines)


def run_slots(args) -> int:
    from cjepa.config import load_config
    from cjepa.paths import config_path
    from cjepa.trainer import train

    base = [str(config_path("world/demo_slots_full.yaml" if args.full else "world/demo_slots.yaml"))]
    cfg = load_config(base + list(args.config), [f"run.out_dir={args.out}", *args.overrides])
    t0 = time.time()
    summary = train(cfg, progress=not args.no_progress)
    print()
    print_train_summary(summary)
    print()
    fe = summary["final_eval"]
    rows = [("train loss (last log)", summary.get("train/loss", float("nan"))),
            ("val future MSE", summary.get("val/loss_future", float("nan"))),
            *_rollout_rows(fe), ("wall time (s)", time.time() - t0)]
    print(table(rows, ["demo summary (slot world)", "value"]))
    print("\n" + _verdict(fe))
    return 0


def run(args) -> int:
    if args.slots:
        return run_slots(args)
    from pathlib import Path

    from cjepa.demo_pipeline import run_demo

    t0 = time.time()
    seed = [] if args.seed is None else [f"run.seed={args.seed}"]
    res = run_demo(
        Path(args.out), train_videos=args.train_videos or (256 if args.full else 64),
        val_videos=args.val_videos or (48 if args.full else 16),
        full=args.full, encoder_overrides=seed + args.encoder, predictor_files=args.config,
        predictor_overrides=seed + args.overrides,
        progress=not args.no_progress, decode_videos=args.decode_videos,
        log=lambda m: print(f"cjepa demo {m}", file=sys.stderr, flush=True),
    )
    print()
    print_train_summary(res.predictor)
    enc = res.encoder.get("final_eval", {})
    val_extract = next((s for s in res.extract if s["split"] == "val"), {})
    fe = res.predictor["final_eval"]
    rows = [
        ("encoder FG-ARI, held-out clips (video / per frame)",
         f"{enc.get('fg_ari', float('nan')):.3f} / {enc.get('fg_ari_frame', float('nan')):.3f}"),
        ("encoder mBO, held-out clips", enc.get("mbo", float("nan"))),
        ("encoder FG-ARI, whole held-out videos (extraction)", val_extract.get("fg_ari", float("nan"))),
        ("slot swap rate, whole held-out videos (extraction)", val_extract.get("swap_rate", float("nan"))),
        ("predictor train loss (last log)", res.predictor.get("train/loss", float("nan"))),
        ("predictor val future MSE", res.predictor.get("val/loss_future", float("nan"))),
        *_rollout_rows(fe),
        *[(f"time: {k} (s)", v) for k, v in res.stage_s.items()],
        ("wall time (s)", time.time() - t0),
    ]
    print()
    print(table(rows, ["demo summary (built-in world)", "value"]))
    print("\n" + _verdict(fe, {"fg_ari": val_extract.get("fg_ari", enc.get("fg_ari"))}, val_extract.get("swap_rate")))
    if res.decoded:
        from cjepa.eval.rollout_video import summary_line

        print("\n" + summary_line(res.decoded) + f"\nclips: {', '.join(res.decoded['clips'])}")
    import json

    (res.out / "demo_summary.json").write_text(json.dumps(demo_record(res, fe, time.time() - t0), indent=1))
    print(f"tensorboard --logdir {res.out}   (encoder/tb: losses, slot-mask images and videos; predictor/tb: losses, "
          "rollout-error plot; rollout_video/tb: decoded rollout videos)")
    return 0
