"""`cjepa demo` over seeds: per-seed whole-video FG-ARI, swap rate and rollout ratios, with their spread.

Runs ``cjepa demo --seed S --out <root>/s<S>`` for each seed (or, with ``--collect``, reads the demos already run
there), appends each demo's ``demo_summary.json`` (git SHA, machine, date) as one row to a JSONL file under
``benchmarks/results/`` and prints a table: per seed, then mean and min-max over seeds. README's demo figures
come from these rows.

    python benchmarks/demo_seeds.py --seeds 0 1 2 --root runs/demo_seeds --note "2-core CPU shared with other jobs"
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cjepa.utils.report import table  # noqa: E402


def _spread(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def _unfinished(out: Path) -> dict:
    """A demo stopped before its summary: the encoder's last validation (whole held-out videos) and where it stood."""
    import platform
    from datetime import datetime, timezone

    rows = [json.loads(line) for line in (out / "encoder" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    val = [r for r in rows if "val/fg_ari" in r]
    git = dict(line.split(": ", 1) for line in (out / "encoder" / "git.txt").read_text().splitlines() if ": " in line)
    return {
        "finished": False, "git": git, "machine": f"{platform.machine()} ({__import__('os').cpu_count()} cpus)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "encoder_steps_done": rows[-1]["step"] if rows else 0,
        "encoder_val": {k.split("/", 1)[1]: v for k, v in val[-1].items() if k.startswith("val/")} if val else None,
        "encoder_val_step": val[-1]["step"] if val else None,
        "encoder_last_log": next((r for r in reversed(rows) if "train/loss" in r), None),
        # the finished encoder's final validation (the demo may still be extracting or training the predictor)
        "encoder_final_eval": (json.loads((out / "encoder" / "summary.json").read_text()).get("final_eval")
                               if (out / "encoder" / "summary.json").is_file() else None),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--root", default="runs/demo_seeds", help="one demo directory per seed: <root>/s<seed>")
    p.add_argument("--dir-format", default="{root}/s{seed}", help="each seed's demo directory (default {root}/s{seed})")
    p.add_argument("--collect", action="store_true", help="do not run: read the demos already in <root>")
    p.add_argument("--note", default="", help="stored with every row (e.g. how loaded the machine was)")
    p.add_argument("--out", default=None, help="JSONL to append to (default benchmarks/results/demo_<yyyymmdd>.jsonl)")
    p.add_argument("demo_args", nargs="*", help="passed to cjepa demo (after --)")
    a = p.parse_args(argv)
    rows = []
    for s in a.seeds:
        out = Path(a.dir_format.format(root=a.root, seed=s))
        if not a.collect:
            subprocess.run([sys.executable, "-m", "cjepa.cli", "demo", "--seed", str(s), "--out", str(out),
                            "--no-progress",
                            *a.demo_args], check=True)
        if (out / "demo_summary.json").is_file():
            rec = json.loads((out / "demo_summary.json").read_text())
        elif a.collect:
            rec = _unfinished(out)
        else:
            raise FileNotFoundError(out / "demo_summary.json")
        rows.append({"benchmark": "demo_seeds", "seed": s, "note": a.note, **rec})
    path = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"demo_{time.strftime('%Y%m%d')}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    print(f"rows appended to {path}")
    if not all(r.get("finished", True) for r in rows):
        for r in rows:
            print(f"seed {r['seed']}: " + (json.dumps({"val_step": r["encoder_val_step"], **(r["encoder_val"] or {})})
                                           if not r.get("finished", True) else "finished"))
        return 0
    keys = [("video FG-ARI", "video_fg_ari"), ("swap rate", "video_swap_rate"), ("ratio (mean)", "ratio_mean")]
    body = [[r["seed"], *(r[k] for _, k in keys), max(r["ratio_per_step"]), r["wall_s"]] for r in rows]
    body.append(["mean (min-max)", *(_spread([r[k] for r in rows]) for _, k in keys),
                 _spread([max(r["ratio_per_step"]) for r in rows]),
                 _spread([r["wall_s"] for r in rows])])
    print(table(body, ["seed", *(n for n, _ in keys), "ratio (worst step)", "wall s"]))
    steps = len(rows[0]["ratio_per_step"])
    mean_steps = [sum(r["ratio_per_step"][i] for r in rows) / len(rows) for i in range(steps)]
    print("ratio per rollout step, mean over seeds: " + " ".join(f"{v:.2f}" for v in mean_steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
