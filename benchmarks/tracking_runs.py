"""Whole-video slot tracking of the demo's SAVi: one arm (encoder overrides) over seeds.

Each (arm, seed) trains the demo encoder (``configs/world/demo_encoder.yaml`` plus the arm's overrides) on one
shared render of the demo world, then encodes every held-out video whole (slots carried from frame to frame by the
transition, as ``cjepa demo`` extracts them) and records the whole-video FG-ARI, the slot-identity swap rate and
the 6-frame validation-clip FG-ARI. ``--demo`` instead runs the whole ``cjepa demo`` per seed with the arm's
overrides and also records the predictor / copy-last rollout ratios and the stage times. ``--eval`` trains
nothing: it re-encodes the held-out videos of a trained arm under evaluation-only settings (the transition
replaced by identity, other slot-attention iteration counts) to tell which part of the tracking drifts.
Rows (git SHA, machine, date, arm, overrides, per-seed figures) are appended to
``benchmarks/results/tracking_<yyyymmdd>.jsonl``.

    python benchmarks/tracking_runs.py --arm base --seeds 0 1 2
    python benchmarks/tracking_runs.py --arm grow --seeds 0 --encoder "encoder.data.clip_schedule=[[300,4],[312,8]]" ...
    python benchmarks/tracking_runs.py --arm default --seeds 0 1 2 --demo
    python benchmarks/tracking_runs.py --arm base --seeds 0 --eval encoder.savi.transition=identity --eval-name id
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cjepa.utils.report import table  # noqa: E402
from cjepa.utils.run_dir import git_info  # noqa: E402


def _provenance() -> dict:
    import torch

    return {
        "git": git_info(), "machine": f"{platform.machine()} {platform.processor()} ({os.cpu_count()} cpus)",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def encoder_arm(root: Path, arm: str, seed: int, overrides: list[str], train_videos: int, val_videos: int) -> dict:
    """Train the demo encoder with ``overrides`` and score whole held-out videos; returns the row's figures."""
    from cjepa.demo_pipeline import demo_configs, extract_slots, render_world
    from cjepa.trainer import train

    out = root / arm / f"s{seed}"
    world = root / "world"
    enc_cfg, _ = demo_configs(out, False, [f"run.seed={seed}", *overrides, f"encoder.data.path={world}"], [], [])
    render_world(enc_cfg, world, {"train": train_videos, "val": val_videos}, progress=False)
    t = time.time()
    summary = train(enc_cfg, progress=False)
    enc_s = time.time() - t
    t = time.time()
    val = next(s for s in extract_slots(enc_cfg, out, ["val"], progress=False) if s["split"] == "val")
    clips = summary.get("final_eval", {})
    return {
        "video_fg_ari": val.get("fg_ari"), "video_swap_rate": val.get("swap_rate"),
        "clip_fg_ari": clips.get("fg_ari"), "clip_swap_rate": clips.get("swap_rate"),
        "clip_frames_val": enc_cfg.encoder.data.val_clip_frames, "encoder_s": enc_s, "extract_val_s": time.time() - t,
        **held_objects(out / "slots"),
    }


def eval_arm(root: Path, arm: str, seed: int, overrides: list[str], eval_overrides: list[str], name: str) -> dict:
    """Re-encode the held-out videos with an arm's trained encoder under evaluation-only overrides (e.g.
    ``encoder.savi.transition=identity``) into ``<root>/<arm>/s<seed>/eval/<name>/slots``; the row's figures.

    The weights are those the arm trained (``<root>/<arm>/s<seed>/encoder``); ``overrides`` must be the arm's own,
    so the model is built as it was trained."""
    from cjepa.demo_pipeline import demo_configs, extract_slots

    out = root / arm / f"s{seed}"
    if not (out / "encoder" / "checkpoints").is_dir():
        raise SystemExit(f"--eval: no trained encoder in {out / 'encoder'} (train the arm first)")
    enc_cfg, _ = demo_configs(out, False, [f"run.seed={seed}", *overrides, *eval_overrides,
                                           f"encoder.data.path={root / 'world'}"], [], [])
    store = out / "eval" / name / "slots"
    t = time.time()
    val = next(s for s in extract_slots(enc_cfg, out, ["val"], progress=False, store=store) if s["split"] == "val")
    return {"video_fg_ari": val.get("fg_ari"), "video_swap_rate": val.get("swap_rate"),
            "extract_val_s": time.time() - t, **held_objects(store)}


def demo_arm(root: Path, arm: str, seed: int, overrides: list[str], demo_args: list[str]) -> dict:
    """The whole ``cjepa demo`` (fresh process) with the arm's encoder overrides; its summary record."""
    out = root / arm / f"s{seed}"
    out.mkdir(parents=True, exist_ok=True)
    if (root / "world").is_dir() and not (out / "world").exists():  # the world the arm's encoder was trained on
        (out / "world").symlink_to((root / "world").resolve(), target_is_directory=True)
    cmd = [sys.executable, "-m", "cjepa.cli", "demo", "--seed", str(seed), "--out", str(out), "--no-progress",
           *demo_args]
    for o in overrides:
        cmd += ["--encoder", o]
    subprocess.run(cmd, check=True)
    rec = json.loads((out / "demo_summary.json").read_text())
    keep = ("video_fg_ari", "video_swap_rate", "rollout_mse", "baseline_mse", "ratio_per_step", "ratio_mean", "stage_s",
            "wall_s")
    row = {k: rec[k] for k in keep}
    row["clip_fg_ari"] = rec["encoder_val_clips"].get("fg_ari")
    row["clip_swap_rate"] = rec["encoder_val_clips"].get("swap_rate")
    row["ratio_worst_step"] = max(rec["ratio_per_step"])
    return row


def held_objects(slot_root: Path, split: str = "val") -> dict:
    """How long slots keep the objects they start with, from a slot store's per-frame ``object_ids`` (T, S).

    Per frame t over every object present at frame 0 of every video: ``held_first`` = fraction still held by
    (one of) the slot(s) that held it at frame 0, ``held_any`` = fraction held by any slot (an object no slot
    chose is merged into a bigger one's slot, or hidden)."""
    import numpy as np

    from cjepa.data.slot_store import SlotSplit

    store = SlotSplit(slot_root, split)
    first = any_ = count = None
    for key in store:
        ids = store.extra(key, "object_ids").astype(np.int64)  # (T, S); -1 = no object
        if first is None:
            first, any_, count = (np.zeros(ids.shape[0]) for _ in range(3))
        for obj in (o for o in np.unique(ids[0]) if o >= 0):
            start = ids[0] == obj  # (S,) the slot(s) holding it at frame 0
            count += 1
            any_ += (ids == obj).any(axis=1)
            first += (ids[:, start] == obj).any(axis=1)
    return {"held_first": (first / count).tolist(), "held_any": (any_ / count).tolist(), "objects": int(count[0])}


def _spread(values: list) -> str:
    v = [x for x in values if x is not None]
    return f"{sum(v) / len(v):.3f} ({min(v):.3f}-{max(v):.3f})" if v else "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arm", required=True, help="name of the setting (rows and run directories carry it)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--root", default="runs/tracking",
                   help="run directories: <root>/<arm>/s<seed>, world in <root>/world")
    p.add_argument("--encoder", action="append", default=[], metavar="key=value",
                   help="encoder-stage override (repeatable)")
    p.add_argument("--demo", action="store_true",
                   help="run the whole cjepa demo per seed (predictor ratios, stage times)")
    p.add_argument("--eval", action="append", default=[], metavar="key=value", dest="eval_overrides",
                   help="do not train: re-encode the held-out videos of the trained <root>/<arm>/s<seed> with these "
                   "evaluation-only overrides (repeatable; --encoder must repeat the arm's own overrides)")
    p.add_argument("--eval-name", default="", help="name of the --eval setting (rows and store folder carry it)")
    p.add_argument("--held", action="store_true",
                   help="do not run: append how long the slots of <root>/<arm>/s<seed>/slots keep their objects")
    p.add_argument("--train-videos", type=int, default=64)
    p.add_argument("--val-videos", type=int, default=16)
    p.add_argument("--note", default="", help="stored with every row (e.g. how loaded the machine was)")
    p.add_argument("--out", default=None,
                   help="JSONL to append to (default benchmarks/results/tracking_<yyyymmdd>.jsonl)")
    p.add_argument("demo_args", nargs="*", help="passed to cjepa demo with --demo (after --)")
    a = p.parse_args(argv)
    root = Path(a.root)
    path = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"tracking_{time.strftime('%Y%m%d')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if a.held:
        for s in a.seeds:
            held = held_objects(root / a.arm / f"s{s}" / "slots")
            row = {"benchmark": "tracking_held", "arm": a.arm, "seed": s, "note": a.note, **_provenance(), **held}
            with open(path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            marks = [0, 1, 2, 3, 4, 6, 8, 16, 32, len(held["held_first"]) - 1]
            print(
                f"{a.arm} s{s}: frame "
                + " ".join(f"{t}:{held['held_first'][t]:.2f}/{held['held_any'][t]:.2f}" for t in marks)
                + "  (held by its frame-0 slot / by any slot)"
            )
        return 0
    if a.eval_overrides:
        name = a.eval_name or "_".join(o.split(".")[-1] for o in a.eval_overrides)
        for s in a.seeds:
            figures = eval_arm(root, a.arm, s, a.encoder, a.eval_overrides, name)
            row = {"benchmark": "tracking_eval", "arm": a.arm, "seed": s, "eval": name, "encoder_overrides": a.encoder,
                   "eval_overrides": a.eval_overrides, "note": a.note, **_provenance(), **figures}
            with open(path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            held = figures["held_first"]
            print(f"{a.arm} s{s} [{name}]: video FG-ARI {figures['video_fg_ari']:.3f} swap "
                  f"{figures['video_swap_rate']:.3f} held " + " ".join(f"{t}:{held[t]:.2f}" for t in (4, 8, 16, 32, 63)
                                                                          if t < len(held)), flush=True)
        return 0
    for s in a.seeds:
        if a.demo:
            figures = demo_arm(root, a.arm, s, a.encoder, a.demo_args)
        else:
            figures = encoder_arm(root, a.arm, s, a.encoder, a.train_videos, a.val_videos)
        row = {"benchmark": "tracking_demo" if a.demo else "tracking_encoder", "arm": a.arm, "seed": s,
               "encoder_overrides": a.encoder, "demo_args": a.demo_args, "note": a.note, **_provenance(), **figures}
        with open(path, "a") as fh:  # one row per finished seed: a stopped sweep keeps what it measured
            fh.write(json.dumps(row) + "\n")
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("arm", "seed", "video_fg_ari", "video_swap_rate", "clip_fg_ari")}),
              flush=True)
    print(f"rows appended to {path}")
    keys = ["video_fg_ari", "video_swap_rate",
            "clip_fg_ari"] + (["ratio_mean", "ratio_worst_step", "wall_s"] if a.demo else ["encoder_s"])
    body = [[r["seed"], *(r.get(k) for k in keys)] for r in rows]
    body.append(["mean (min-max)", *(_spread([r.get(k) for r in rows]) for k in keys)])
    print(table(body, ["seed", *keys]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
