"""benchmarks/figures.py: every measured figure of the docs has a registry entry whose committed row rounds to it."""

import json
import subprocess
import textwrap

import pytest

from benchmarks import figures
from tests.helpers import REPO

PROV = {"git_sha": "abc123", "machine": "x86_64 (2 cpus)", "date": "2026-12-06T19:00:00+00:00"}


def test_every_doc_figure_has_its_result_row():
    """The real README.md and benchmarks/README.md against the committed registry and result files."""
    problems = figures.check(REPO)
    assert not problems, "\n".join(["figures without evidence (see benchmarks/README.md, 'Figures'):", *problems])


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout: tracked files cannot be listed")
def test_every_result_file_of_the_registry_is_committed():
    assert figures.untracked_files(REPO) == []


def test_an_untracked_result_file_is_named(tmp_path):
    _repo(tmp_path, DOC, ROWS, REGISTRY)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert figures.untracked_files(tmp_path) == [
        "benchmarks/results/FIGURES.yaml: result file benchmarks/results/r.jsonl is not tracked by git: commit it"]
    subprocess.run(["git", "add", "benchmarks/results/r.jsonl"], cwd=tmp_path, check=True)
    assert figures.untracked_files(tmp_path) == []


def _repo(tmp_path, doc: str, rows: list[dict], registry: str):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "README.md").write_text(doc)
    (tmp_path / "benchmarks" / "results" / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / figures.REGISTRY).write_text(textwrap.dedent(registry))
    return lambda: figures.check(tmp_path, docs=["README.md"])


DOC = textwrap.dedent("""\
    # Demo

    The demo takes about 6 minutes (seed 0) and scores FG-ARI
    0.85 on held-out clips; `train.max_steps=500` is config.

    | run | frames/s |
    |---|---|
    | after | 227 |
""")
ROWS = [
    {"benchmark": "demo", "seed": 0, "wall_s": 341.0, "fg_ari": 0.8452, **PROV},
    {"benchmark": "decode", "frames_per_s": 226.65, **PROV},
]
REGISTRY = """\
    figures:
      - {doc: README.md, text: "takes about 6 minutes", figure: "6", file: benchmarks/results/r.jsonl,
         rows: {benchmark: demo, seed: 0}, field: wall_s, scale: 1/60}
      - {doc: README.md, text: "scores FG-ARI 0.85 on held-out", figure: "0.85", file: benchmarks/results/r.jsonl,
         rows: {benchmark: demo}, field: fg_ari}
      - {doc: README.md, text: "| after | 227 |", figure: "227", file: benchmarks/results/r.jsonl,
         rows: {benchmark: decode}, field: frames_per_s}
"""


def test_a_consistent_doc_passes(tmp_path):
    """Snippets match across line wraps; inline code and the table's text cells are not figures."""
    assert _repo(tmp_path, DOC, ROWS, REGISTRY)() == []


def test_a_deleted_result_row_fails(tmp_path):
    problems = _repo(tmp_path, DOC, ROWS[1:], REGISTRY)()
    assert len(problems) == 2 and all("no row of benchmarks/results/r.jsonl matches" in p for p in problems), problems


def test_a_changed_doc_figure_fails(tmp_path):
    problems = _repo(tmp_path, DOC.replace("about 6 minutes", "about 9 minutes"), ROWS, REGISTRY)()
    assert any("'takes about 6 minutes': text not found in README.md" in p for p in problems), problems
    assert any("'9 minutes' has no entry" in p for p in problems), problems


def test_a_figure_the_row_does_not_round_to_fails(tmp_path):
    doc = DOC.replace("FG-ARI\n0.85", "FG-ARI\n0.83")
    problems = _repo(tmp_path, doc, ROWS,
                     REGISTRY.replace('0.85 on held-out", figure: "0.85"', '0.83 on held-out", figure: "0.83"'))()
    assert problems == ["benchmarks/results/FIGURES.yaml entry README.md 'scores FG-ARI 0.83 on held-out': the result "
                        "says 0.8452, which does not round to 0.83: correct the doc or the registry entry"]


def test_an_unregistered_figure_fails_and_says_what_to_add(tmp_path):
    doc = DOC + "\nExtraction runs at 53.6 videos/s and 8/10 pairs solve.\n"
    problems = _repo(tmp_path, doc, ROWS, REGISTRY)()
    assert len(problems) == 2, problems
    first = problems[0]
    assert first.startswith("README.md:10 (section 'Demo'): '53.6 videos/s' has no entry in "
                            "benchmarks/results/FIGURES.yaml")
    assert 'figure: "53.6"' in first and "under not_measured" in first and "(and commit the row)" in first
    assert "'8/10' has no entry" in problems[1]


def test_a_row_without_provenance_fails(tmp_path):
    rows = [{k: v for k, v in ROWS[0].items() if k != "machine"}, ROWS[1]]
    problems = _repo(tmp_path, DOC, rows, REGISTRY)()
    assert len(problems) == 2 and all("has no machine" in p for p in problems), problems


def test_not_measured_needs_a_reason_and_covers_its_numbers(tmp_path):
    doc = DOC + "\nThe target is ≥ 2x eager.\n"
    ok = REGISTRY + '    not_measured:\n      - {doc: README.md, text: "target is ≥ 2x eager", reason: "target"}\n'
    assert _repo(tmp_path, doc, ROWS, ok)() == []
    (tmp_path / figures.REGISTRY).write_text(textwrap.dedent(ok.replace('reason: "target"', 'reason: ""')))
    assert figures.check(tmp_path, docs=["README.md"]) == [
        "benchmarks/results/FIGURES.yaml entry README.md 'target is ≥ 2x eager': give the reason these numbers are "
        "not measured"
    ]


def test_ambiguous_or_malformed_entries_fail(tmp_path):
    doc = DOC + "\nAgain it takes about 6 minutes.\n"
    bad = REGISTRY + ('      - '
                      '{doc: README.md, text: "| after | 227 |", figure: "227", file: benchmarks/results/r.jsonl,\n'
                      '         rows: {benchmark: decode}, feild: frames_per_s}\n')
    problems = _repo(tmp_path, doc, ROWS, bad)()
    assert any("found 2 times in README.md: make it longer" in p for p in problems), problems
    assert any("unknown keys ['feild']" in p for p in problems), problems


@pytest.mark.parametrize("line, found", [
    ("render 7 s, encoder 4 min, 0.12x copy-last, 32× faster", ["7 s", "4 min", "0.12x", "32×"]),
    ("solves 25 of 30 pairs, 8/10 episodes, rate 0.30", ["25 of 30", "8/10", "0.30"]),
    ("64×64 grids, 1536x7x196x128, torch 2.13.0, sm_90, Q1, 2^31 − 1", []),
    ("inline `optim.lr=3e-4 --repeats 9 0.5` code", []),
    ("| before (8cf56d3) | 407 | 386 / 460 |", ["407", "386", "460"]),
    ("| `obs_frames` (128) | text 5 |", ["128"]),
])
def test_scan_finds_figure_like_numbers(line, found):
    assert [f.text for f in figures.scan("d.md", line + "\n")] == found


def test_field_paths_reductions_and_ratios(tmp_path):
    rows = [{"benchmark": "b", "model.residual": True, "seed": s, "curve": [1.0 + s, 2.0, 3.0 * (s + 1)],
             "git": {"sha": "x"}, "device": "cpu", "timestamp": 1.0} for s in (0, 1)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def value(**spec):
        return figures.resolve({"file": "r.jsonl", "rows": {"model.residual": True}, **spec}, tmp_path)

    assert value(field="curve.0", reduce="mean") == 1.5
    assert value(field="curve.2", reduce="max/min") == 2.0
    assert value(field="curve", reduce="sum", items="1:", items_reduce="max") == 9.0
    episodes = [{"success": ok, "px": px} for ok, px in ((True, 1.0), (False, 9.0), (True, 4.0))]
    (tmp_path / "e.jsonl").write_text(json.dumps({**rows[0], "per_episode": episodes}) + "\n")
    assert figures.resolve({"file": "e.jsonl", "rows": {"seed": 0}, "field": "per_episode", "items": ":2",
                            "item_field": "success", "items_reduce": "sum"}, tmp_path) == 1.0
    assert figures.resolve({"file": "e.jsonl", "rows": {"seed": 0}, "field": "per_episode", "item_field": "px",
                            "items_reduce": "max"}, tmp_path) == 9.0
    assert value(field="seed", reduce="sum", scale="1/2") == 0.5
    assert value(field="seed", reduce="count") == 2
    assert value(rows={"seed": 1}, field="curve.2", over={"rows": {"seed": 0}, "field": "curve.2"}) == 2.0
    with pytest.raises(ValueError, match="2 rows of r.jsonl match"):
        value(field="seed")
    with pytest.raises(ValueError, match="is a list: pick an item"):
        value(rows={"seed": 0}, field="curve")


@pytest.mark.parametrize("value, figure, step, ok", [
    (341 / 60, "6", None, True), (0.8452, "0.85", None, True), (0.8452, "0.84", None, False),
    (0.4345, "0.44", None, False), (1555.2, "1550", 10, False), (1553.0, "1550", 10, True),
    (float("nan"), "1", None, False),
])
def test_rounds_to_the_written_precision(value, figure, step, ok):
    assert figures.rounds_to(value, figure, step) is ok
