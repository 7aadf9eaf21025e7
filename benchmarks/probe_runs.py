"""`cjepa probe` on trained predictors: one JSONL row per model (with provenance) and its plots.

For each ``LABEL=RUN_DIR`` runs ``cjepa probe --checkpoint RUN_DIR --out <root>/<LABEL>``, appends a row (git SHA,
machine, date, the probe command, the run's masking settings and training steps, the ratio with its 95% interval,
per layer and layer-averaged, the number of events) to ``benchmarks/results/probe_<yyyymmdd>.jsonl`` and copies the
two PNGs to ``benchmarks/results/probe/<LABEL>_{curve,example}.png``.

    python benchmarks/probe_runs.py masked=runs/demo/demo_slots unmasked=runs/demo_m0/demo_slots --note "..."
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cjepa.utils.report import table  # noqa: E402
from cjepa.utils.run_dir import git_info  # noqa: E402


def probe_row(label: str, run_dir: Path, out: Path, extra: list[str], note: str) -> dict:
    cmd = [sys.executable, "-m", "cjepa.cli", "probe", "--checkpoint", str(run_dir), "--out", str(out), *extra]
    subprocess.run(cmd, check=True)
    res = json.loads((out / "probe.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return {
        "benchmark": "attention_probe", "label": label, "note": note, "git": git_info(ROOT),
        "machine": f"{platform.machine()} ({__import__('os').cpu_count()} cpus)",
        "torch": __import__("torch").__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "cjepa probe --checkpoint RUN_DIR " + " ".join(extra), "run": str(run_dir),
        "masking": cfg.get("masking"),
        "model": {k: cfg["model"].get(k) for k in ("depth", "heads", "slot_dim", "history_frames", "pred_frames")},
        "train_steps": summary.get("steps"), "val_loss_future": summary.get("val/loss_future"),
        **{k: res[k] for k in ("ratio", "ratio_ci95", "ratio_layer_mean", "ratio_per_layer", "event_ratio_median",
                               "events",
                               "collisions_skipped", "videos", "query_steps", "collision_index", "window_k", "layer")},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN_DIR")
    p.add_argument("--root", default="runs/probe", help="probe outputs: <root>/<LABEL>")
    p.add_argument("--note", default="", help="stored with every row (how the runs were trained, machine load)")
    p.add_argument("--out", default=None, help="JSONL to append to (default benchmarks/results/probe_<yyyymmdd>.jsonl)")
    p.add_argument("--plots", default=None, help="where the PNGs are copied (default benchmarks/results/probe)")
    p.add_argument("--probe-args", nargs=argparse.REMAINDER, default=[], help="passed to cjepa probe")
    a = p.parse_args(argv)
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"probe_{datetime.now(timezone.utc):%Y%m%d}.jsonl")
    plots = Path(a.plots) if a.plots else ROOT / "benchmarks" / "results" / "probe"
    plots.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in a.runs:
        label, _, run = item.partition("=")
        pdir = Path(a.root) / label
        rows.append(probe_row(label, Path(run), pdir, a.probe_args, a.note))
        for kind in ("curve", "example"):
            shutil.copyfile(pdir / f"probe_{kind}.png", plots / f"{label}_{kind}.png")
    with out.open("a") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    print(table([(r["label"], r["masking"].get("num_masked"), r["masking"].get("num_masked_max"), f"{r['ratio']:.3f}",
                  f"{r['ratio_ci95'][0]:.3f}-{r['ratio_ci95'][1]:.3f}", f"{r['ratio_layer_mean']:.3f}",
                  " ".join(f"{x:.3f}" for x in r["ratio_per_layer"]), r["events"]) for r in rows],
                ["model", "num_masked", "max", "ratio (last layer)", "95% CI", "layer mean", "per layer", "events"]))
    print(f"appended {len(rows)} rows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
