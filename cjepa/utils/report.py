"""Plain-text tables for end-of-run summaries."""

from __future__ import annotations

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


def write_csv(path, rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> None:
    """The rows of a :func:`table` as CSV: the same columns and cells, numbers at full precision (``str``, which
    reads back to the same float) instead of rounded for the eye."""
    import csv
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(headers)
        w.writerows([[c if isinstance(c, str) else str(c) for c in r] for r in rows])
