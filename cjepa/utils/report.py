"""Plain-text tables for end-of-run summaries."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4f}"
    return str(v)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    sep = "  ".join("-" * w for w in widths)
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join([line, sep, *body])


def print_train_summary(summary: dict) -> None:
    """The end-of-run summary of a training run: its scalar metrics, the rollout-error curve, where it wrote."""
    rows = [(k, v) for k, v in summary.items() if isinstance(v, (int, float, str)) and k not in ("run_dir",)]
    print(table(rows, ["metric", "value"]))
    fe = summary.get("final_eval") or {}
    if "mse" in fe:
        steps = range(1, len(fe["mse"]) + 1)
        print("\nrollout error on held-out videos (MSE per predicted step)")
        print(table([(i, a, b) for i, a, b in zip(steps, fe["mse"], fe["baseline_mse"])],
                    ["step", "predictor", "copy-last-frame"]))
    print(f"\nrun directory: {summary['run_dir']}   tensorboard --logdir {summary['tensorboard']}")
def write_csv(path, rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """The rows of a :func:`table` as CSV: the same columns and cells, numbers at full precision (``str``, which
    reads back to the same float) instead of rounded for the eye."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(headers)
        w.writerows([[c if isinstance(c, str) else str(c) for c in r] for r in rows])
