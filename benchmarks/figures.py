"""Every measured figure in the docs comes from a committed result row: the registry and its checker.

``benchmarks/results/FIGURES.yaml`` maps each figure, as it is written in README.md or benchmarks/README.md, to
the result file, the row(s) and the field that back it::

    figures:
      - doc: README.md
        text: "the demo takes about 6 minutes"    # verbatim (line breaks = spaces), found exactly once in doc
        figure: "6"                               # the number as written inside text
        file: benchmarks/results/demo_20261206.jsonl
        rows: {benchmark: demo_seeds, git.sha: 39a9900817574bd2970e1bb2c305b0276315945d}
        field: wall_s                             # dotted path into the row; list items by number (ratio_per_step.0)
        scale: 1/60                               # optional: value x scale (seconds -> minutes; 100 for %)

Optional keys: ``reduce`` over the selected rows (``one``, the default, needs exactly one row; ``mean``, ``min``,
``max``, ``sum``, ``max/min``, ``count``; element-wise for list fields), ``items`` (a ``start:stop`` slice of a list
field; ``item_field``, a dotted path, reads one field of each item of a list of records, e.g. the successes of an
evaluation's first 20 episodes) with ``items_reduce`` (``mean`` / ``min`` / ``max`` / ``sum``), ``over``
(``{rows, field, reduce}``: divide by that value, for speed-ups between rows), ``step`` (the rounding step of an
"about" figure, e.g. 10 for "about 1550 s").
The value must round to the figure at the figure's written precision (or ``step``).

``not_measured`` lists snippets whose numbers look like figures but come from no run (config values, targets,
vendor peaks, published results), each with its ``reason``.

Every selected row must carry provenance: a git SHA, the machine and the date (the spellings the result writers
use are listed in ``PROVENANCE``). :func:`scan` finds figure-like numbers in the docs (numbers with units, decimal
numbers, counts "N of M" / "N/M", all-numeric table cells) outside inline code; :func:`check` reports every
registry entry that does not hold and every figure no entry covers, each problem as one line saying what to add.

    python benchmarks/figures.py             # the report; exit 1 on any problem
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = Path("benchmarks/results/FIGURES.yaml")
DOCS = ("README.md", "benchmarks/README.md")

# provenance fact -> the field paths that hold it, in the spellings of the result writers
# (benchmarks/common.py: git_sha/device/timestamp; demo summaries: git.sha/machine/date; oracle: date_utc)
PROVENANCE = {
    "git SHA": ("git_sha", "git.sha"),
    "machine": ("machine", "device"),
    "date": ("date", "date_utc", "timestamp"),
}

_UNITS = (r"ms|s|min|minutes?|-minute|hours?|%|frames/s|samples/s|clips/s|videos/s|steps/s|candidates/s|"
          r"MB|GB|MiB|GiB|GB/s|TB/s|TFLOP/s|GFLOP/s|px|rad")
_NUM = r"(?<![\w.^])\d+(?:\.\d+)?"
FIGURE_PATTERNS = (
    # a number with a unit: 341 s, 9 minutes, 20.0 %, 1.47x, 203 frames/s (not 64x64 or 1536x7: dimensions)
    re.compile(rf"{_NUM}(?:\s?(?:{_UNITS})(?![\w/])|\s?[x×](?![\w.]))"),
    # a decimal number anywhere: FG-ARI 0.83, ratio 0.40 (not versions such as 2.13.0)
    re.compile(r"(?<![\w.^])\d+\.\d+(?![\w.])"),
    # counts: 898 of 900, 8/10
    re.compile(r"(?<![\w.^])\d+(?: of |/)\d+(?![\w.])"),
)
_NUMERIC_CELL = re.compile(r"^[\d.\s/()–\-±x×%,]*\d[\d.\s/()–\-±x×%,]*$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_REDUCERS = {
    "mean": lambda xs: sum(xs) / len(xs),
    "min": min,
    "max": max,
    "sum": sum,
    "max/min": lambda xs: max(xs) / min(xs),
    "count": len,
}


@dataclass(frozen=True)
class Found:
    """A figure-like number in a doc: its text and where it is."""

    doc: str
    start: int
    end: int
    text: str
    line: int
    section: str
    context: str


# ----------------------------------------------------------------------------------------------- doc text


def _masked(text: str) -> str:
    """The text with inline code spans (outside fenced blocks) blanked: config keys and flags are not figures.
    Positions are kept, so spans found in the masked text index the original."""
    out, fenced = [], False
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append(" " * (len(line) - 1) + line[-1:] if line.endswith("\n") else " " * len(line))
            continue
        out.append(line if fenced else re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group()), line))
    return "".join(out)


def snippet_spans(text: str, snippet: str) -> list[tuple[int, int]]:
    """Where a registry snippet occurs in a doc; any run of whitespace in either matches any other (docs wrap)."""
    words = snippet.split()
    if not words:
        return []
    pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
    return [m.span() for m in pattern.finditer(text)]


def _section(text: str, pos: int) -> str:
    heads = [m for m in re.finditer(r"^#+ (.+)$", text[:pos], re.M)]
    return heads[-1].group(1).strip() if heads else "(top)"


def _table_cell_spans(masked: str) -> list[tuple[int, int]]:
    """Numbers in all-numeric cells of markdown tables (| after | 227 | 203 / 263 |): tables give no units."""
    spans, offset = [], 0
    for line in masked.splitlines(keepends=True):
        if line.lstrip().startswith("|"):
            col = offset
            for cell in line.split("|"):
                if _NUMERIC_CELL.match(cell.strip()):
                    spans += [(col + m.start(), col + m.end()) for m in _NUMBER.finditer(cell)]
                col += len(cell) + 1
        offset += len(line)
    return spans


def scan(doc: str, text: str) -> list[Found]:
    """Figure-like numbers of a doc, in order of position (overlapping matches merged into the longest)."""
    masked = _masked(text)
    spans = _table_cell_spans(masked)
    for pat in FIGURE_PATTERNS:
        spans += [m.span() for m in pat.finditer(masked)]
    spans.sort(key=lambda s: (s[0], -s[1]))
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged and s < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    found = []
    for s, e in merged:
        line_start = text.rfind("\n", 0, s) + 1
        line_end = text.find("\n", e)
        found.append(Found(doc, s, e, text[s:e], text.count("\n", 0, s) + 1, _section(text, s),
                           text[line_start:line_end if line_end >= 0 else len(text)].strip()))
    return found


# ----------------------------------------------------------------------------------------------- rows


def field_value(row: dict, path: str) -> Any:
    """``a.b.0``: dict keys, then list items by number; a key that itself holds dots (``model.residual``) wins."""
    cur: Any = row
    parts = path.split(".")
    i = 0
    while i < len(parts):
        if isinstance(cur, dict):  # the longest key made of the next parts: "model.residual" before "model"
            for j in range(len(parts), i, -1):
                key = ".".join(parts[i:j])
                if key in cur:
                    cur, i = cur[key], j
                    break
            else:
                raise KeyError(path)
        elif isinstance(cur, list) and parts[i].lstrip("-").isdigit():
            cur, i = cur[int(parts[i])], i + 1
        else:
            raise KeyError(path)
    return cur


def _has(row: dict, path: str) -> bool:
    try:
        field_value(row, path)
    except (KeyError, IndexError):
        return False
    return True


def load_rows(path: Path) -> list[dict]:
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not a JSON row ({err})") from err
    return rows


def select(rows: list[dict], where: dict) -> list[dict]:
    return [r for r in rows if all(_has(r, k) and field_value(r, k) == v for k, v in where.items())]


def missing_provenance(row: dict) -> list[str]:
    return [fact for fact, paths in PROVENANCE.items() if not any(_has(row, p) and field_value(row, p) for p in paths)]


def _scale(spec: Any) -> float:
    return float(Fraction(str(spec))) if spec is not None else 1.0


def _reduce_rows(values: list[Any], how: str) -> Any:
    if how == "one":
        return values[0]
    fn = _REDUCERS[how]
    if isinstance(values[0], list):  # element-wise over rows (rollout curves of several seeds)
        return [fn([float(v[i]) for v in values]) for i in range(len(values[0]))]
    return fn([float(v) for v in values])


def resolve(entry: dict, root: Path = ROOT) -> float:
    """The value an entry points at (before the rounding check); raises ValueError naming what is missing."""
    path = root / entry["file"]
    if not path.is_file():
        raise ValueError(f"result file {entry['file']} does not exist")
    value = _resolve_part(entry, load_rows(path), entry["file"])
    if "over" in entry:
        value = value / _resolve_part(entry["over"], load_rows(path), entry["file"])
    return value * _scale(entry.get("scale"))


def _resolve_part(spec: dict, rows: list[dict], file: str) -> float:
    where = spec.get("rows", {})
    chosen = select(rows, where)
    how = spec.get("reduce", "one")
    if how not in ("one", *_REDUCERS):
        raise ValueError(f"reduce {how!r} is not one of one, {', '.join(_REDUCERS)}")
    if not chosen:
        raise ValueError(f"no row of {file} matches rows {where}")
    if how == "one" and len(chosen) != 1:
        raise ValueError(f"{len(chosen)} rows of {file} match rows {where}: narrow it to one or set reduce")
    for row in chosen:
        lacking = missing_provenance(row)
        if lacking:
            raise ValueError(f"a row of {file} matching {where} has no {', '.join(lacking)}")
        if not _has(row, spec["field"]):
            raise ValueError(f"a row of {file} matching {where} has no field {spec['field']!r}")
    value = _reduce_rows([field_value(r, spec["field"]) for r in chosen], how)
    if "items" in spec:
        start, _, stop = str(spec["items"]).partition(":")
        value = value[int(start) if start else None:int(stop) if stop else None]
    if "item_field" in spec:  # a list of records (per-episode rows): one field of each, then items_reduce
        value = [field_value(item, spec["item_field"]) for item in value]
    if isinstance(value, list):
        if "items_reduce" not in spec:
            raise ValueError(f"field {spec['field']!r} is a list: pick an item (field.N) or set items_reduce")
        value = _REDUCERS[spec["items_reduce"]]([float(v) for v in value])
    return float(value)


def rounds_to(value: float, figure: str, step: Optional[float] = None) -> bool:
    """Whether ``value`` written at the figure's precision (its decimals, or ``step``) is the figure."""
    decimals = len(figure.partition(".")[2])
    step = float(step) if step else 10.0 ** -decimals
    return math.isfinite(value) and abs(value - float(figure)) <= step / 2 * (1 + 1e-9)


# ----------------------------------------------------------------------------------------------- check


def load_registry(root: Path = ROOT) -> dict:
    data = yaml.safe_load((root / REGISTRY).read_text()) or {}
    unknown = set(data) - {"figures", "not_measured"}
    if unknown:
        raise ValueError(f"{REGISTRY}: unknown top-level keys {sorted(unknown)} (figures, not_measured)")
    return {"figures": data.get("figures") or [], "not_measured": data.get("not_measured") or []}


_FIGURE_KEYS = {"doc", "text", "figure", "file", "rows", "field", "scale", "reduce", "items", "item_field",
                "items_reduce", "over", "step"}
_NOT_MEASURED_KEYS = {"doc", "text", "reason"}


def _entry_where(entry: dict) -> str:
    return f"{REGISTRY} entry {entry.get('doc')!s} {entry.get('text')!r}"


def _check_entry_shape(entry: dict, allowed: set[str], required: set[str]) -> list[str]:
    problems = []
    if set(entry) - allowed:
        problems.append(f"{_entry_where(entry)}: unknown keys {sorted(set(entry) - allowed)} (allowed: "
                        f"{sorted(allowed)})")
    if required - set(entry):
        problems.append(f"{_entry_where(entry)}: missing keys {sorted(required - set(entry))}")
    return problems


def check(root: Path = ROOT, docs: Iterable[str] = DOCS) -> list[str]:
    """Every problem, one line each: registry entries that do not hold, figures that no entry covers."""
    registry = load_registry(root)
    texts = {d: (root / d).read_text() for d in docs}
    problems: list[str] = []
    covered: dict[str, list[tuple[int, int, Optional[str]]]] = {d: [] for d in texts}

    for entry in registry["figures"]:
        shape = _check_entry_shape(entry, _FIGURE_KEYS, {"doc", "text", "figure", "file", "field"})
        if shape:
            problems += shape
            continue
        where, figure = _entry_where(entry), str(entry["figure"])
        spans = _located(entry, texts, problems)
        if spans is None:
            continue
        if not any(m.group() == figure for m in _NUMBER.finditer(entry["text"])):
            problems.append(f"{where}: figure {figure!r} is not a number of its text")
            continue
        covered[entry["doc"]] += [(s, e, figure) for s, e in spans]  # registered; whether it holds is checked next
        try:
            value = resolve(entry, root)
        except (ValueError, KeyError, IndexError, TypeError) as err:
            problems.append(f"{where}: {err}")
            continue
        if not rounds_to(value, figure, entry.get("step")):
            problems.append(f"{where}: the result says {value:.6g}, which does not round to {figure}: "
                            "correct the doc or the registry entry")

    for entry in registry["not_measured"]:
        shape = _check_entry_shape(entry, _NOT_MEASURED_KEYS, _NOT_MEASURED_KEYS)
        if shape:
            problems += shape
            continue
        if not str(entry["reason"]).strip():
            problems.append(f"{_entry_where(entry)}: give the reason these numbers are not measured")
        spans = _located(entry, texts, problems)
        if spans is not None:
            covered[entry["doc"]] += [(s, e, None) for s, e in spans]

    for doc, text in texts.items():
        for f in scan(doc, text):
            if not _is_covered(f, covered[doc], text):
                problems.append(_unregistered(f))
    return problems


def _located(entry: dict, texts: dict[str, str], problems: list[str]) -> Optional[list[tuple[int, int]]]:
    where = _entry_where(entry)
    if entry["doc"] not in texts:
        problems.append(f"{where}: doc must be one of {sorted(texts)}")
        return None
    spans = snippet_spans(texts[entry["doc"]], entry["text"])
    if not spans:
        problems.append(f"{where}: text not found in {entry['doc']} (the doc changed: update the text, or the "
                        "figure and its result row)")
        return None
    if len(spans) > 1:
        problems.append(f"{where}: text found {len(spans)} times in {entry['doc']}: make it longer so it is unique")
        return None
    return spans


def _is_covered(f: Found, spans: list[tuple[int, int, Optional[str]]], text: str) -> bool:
    numbers = [m.group() for m in _NUMBER.finditer(f.text)]
    for s, e, figure in spans:
        if s <= f.start and f.end <= e:
            if figure is None:
                return True
            numbers = [n for n in numbers if n != figure]
    # a found span may hold two numbers (898 of 900): each needs its entry
    return not numbers


def _unregistered(f: Found) -> str:
    number = _NUMBER.search(f.text).group()
    return (
        f"{f.doc}:{f.line} (section {f.section!r}): {f.text!r} has no entry in {REGISTRY}; "
        f'if a run measured it, add under figures: {{doc: {f.doc}, text: "<words around it, verbatim>", '
        f'figure: "{number}", file: benchmarks/results/<file>.jsonl, rows: {{<field>: <value>}}, field: <field>}} '
        f'(and commit the row); if not, add under not_measured: {{doc: {f.doc}, text: "...", reason: "..."}}; '
        f"line: {f.context[:160]!r}"
    )


def untracked_files(root: Path = ROOT) -> list[str]:
    """Result files the registry names that git does not track: a figure needs a committed row, not a local one."""
    named = sorted({e["file"] for e in load_registry(root)["figures"] if "file" in e})
    out = subprocess.run(["git", "ls-files", "--", *named], cwd=root, capture_output=True, text=True, check=True)
    tracked = set(out.stdout.splitlines())
    return [f"{REGISTRY}: result file {f} is not tracked by git: commit it" for f in named if f not in tracked]


def main(argv: Optional[list[str]] = None) -> int:
    problems = check() + untracked_files()
    registry = load_registry()
    for p in problems:
        print(p)
    print(f"{len(registry['figures'])} registered figures, {len(registry['not_measured'])} not-measured snippets, "
          f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
