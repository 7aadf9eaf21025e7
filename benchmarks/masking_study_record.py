"""Record a finished masking study (``cjepa vqa study``) as committed result rows, with its plot and table.

    python benchmarks/masking_study_record.py runs/billiards_masking_study \\
        --config configs/billiards/masking_study.yaml [--sweep runs/billiards_study_predictors] [--note TEXT]

Appends to ``benchmarks/results/masking_study_<yyyymmdd>.jsonl`` one row per line of the study table (``kind:
row``: protocol, the first grid axis's value, replicates, every metric's mean and 95 % half-width over replicates,
the counterfactual gain over the first grid value paired by replicate) and one ``kind: study`` row: the grid, the
reasoner and its own accuracy on the oracle stores (what the world model is measured against), each cell's
predictor (val future loss, rollout MSE and copy-last MSE), and wall times (the sweep's, from its submission to
its last job's summary; the study's cells, from the first rollout written to the last cell's results). Every row
carries git SHA, machine and date. The plot and the markdown table are copied to
``benchmarks/results/masking_study/<study name>_<yyyymmdd>.{png,md}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import record_provenance  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def reasoner_oracle_metrics(reasoner: Path) -> dict | None:
    """The reasoner's accuracy on the oracle stores it was trained against (its run's own final evaluation)."""
    summary = reasoner / "summary.json"
    if not summary.is_file():
        return None
    fe = json.loads(summary.read_text()).get("final_eval") or {}
    return fe.get("metrics")


def sweep_wall_s(sweep: Path) -> float | None:
    """Seconds from the sweep's submission to the last of its jobs' summaries."""
    record = json.loads((sweep / "sweep.json").read_text())
    done = [Path(j["run_dir"]) / "summary.json" for j in record["jobs"]]
    if not all(p.is_file() for p in done):
        return None
    return max(p.stat().st_mtime for p in done) - float(record["submitted_at"])


def cells_wall_s(root: Path, cells: list[Path]) -> float | None:
    """Seconds from the first cell's val rollout to the last cell's results (the cells' local work)."""
    starts = [p.stat().st_mtime for c in cells for p in [c / "rollout" / "meta.json"] if p.is_file()]
    ends = [(c / "results.json").stat().st_mtime for c in cells]
    return max(ends) - min(starts) if starts else None


def study_rows(root: Path) -> list[dict]:
    out = json.loads((root / "study_results.json").read_text())
    x = out["x"]
    rows = []
    for r in out["rows"]:
        metrics = {k: v for k, v in r.items() if isinstance(v, dict) and "mean" in v}
        rows.append({
            "kind": "row", "protocol": r["protocol"], "x": x, "x_value": r[x], "replicates": r["replicates"],
            "mean": {k: v["mean"] for k, v in metrics.items()},
            "ci95": {k: v["ci95"] for k, v in metrics.items()},
            "counterfactual_gain": r.get("counterfactual_gain"),
            "counterfactual_gain_ci95": r.get("counterfactual_gain_ci95"),
        })
    return rows


def _shown(path: str | None) -> str | None:
    """A path as the user gave it: relative to the working directory where it lies under it."""
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def study_record(root: Path, config: str, sweep: Path | None) -> dict:
    out = json.loads((root / "study_results.json").read_text())
    if out["cells_missing"]:
        raise ValueError(f"{root}: cells not finished: {', '.join(out['cells_missing'])}; record a finished study")
    cells = sorted(p.parent for p in root.glob("*/results.json"))
    per_cell = {}
    reasoner = None
    for c in cells:
        res = json.loads((c / "results.json").read_text())
        reasoner = res.get("reasoner")
        p = res["predictor"]
        per_cell[c.name] = {
            "predictor_run": _shown(res.get("predictor_run")), "val_loss_future": p.get("val/loss_future"),
            "rollout_mse": p.get("rollout_mse"), "copy_last_mse": p.get("baseline_mse"),
            "probe_ratio": (res.get("probe") or {}).get("ratio"),
        }
    given = reasoner if reasoner and reasoner != "trained per protocol" else None
    return {
        "kind": "study", "study": root.name, "config": config, "cells": len(cells), "per_cell": per_cell,
        "reasoner": _shown(given), "reasoner_oracle_metrics": reasoner_oracle_metrics(Path(given)) if given else None,
        "sweep": _shown(str(sweep)) if sweep else None, "sweep_wall_s": sweep_wall_s(sweep) if sweep else None,
        "cells_wall_s": cells_wall_s(root, cells),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help="the study folder (<run.out_dir>/<study.name>) with study_results.json")
    p.add_argument("--config", required=True, help="the config the study ran with (stored with the rows)")
    p.add_argument("--sweep", default=None,
                   help="the cjepa sweep folder that trained the predictors (study.predictors)")
    p.add_argument("--note", default="", help="stored with every row (machine load, how the cells ran)")
    p.add_argument("--out", default=None,
                   help="JSONL to append to (default benchmarks/results/masking_study_<date>.jsonl)")
    a = p.parse_args(argv)
    root = Path(a.study)
    if not (root / "study_results.json").is_file():
        print(f"masking_study_record: {root} has no study_results.json; run `cjepa vqa study ... --collect` first",
              file=sys.stderr)
        return 2
    base = record_provenance("masking_study", "benchmarks/masking_study_record.py", argv) | {"note": a.note}
    try:
        lines = [base | study_record(root, a.config, Path(a.sweep) if a.sweep else None)]
    except ValueError as err:
        print(f"masking_study_record: {err}", file=sys.stderr)
        return 2
    lines += [base | {"study": root.name} | r for r in study_rows(root)]
    day = time.strftime("%Y%m%d")
    out = Path(a.out) if a.out else RESULTS / f"masking_study_{day}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")
    figures = out.parent / "masking_study"
    figures.mkdir(exist_ok=True)
    for name, suffix in (("study_plot.png", "png"), ("study_table.md", "md")):
        if (root / name).is_file():
            shutil.copyfile(root / name, figures / f"{root.name}_{day}.{suffix}")
    print(f"{len(lines)} rows appended to {out}; plot and table in {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
