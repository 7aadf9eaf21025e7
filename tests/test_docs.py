"""Every quirk id and spec-section number the repository cites resolves in docs/reference-spec.md.

Code, configs, tests and READMEs cite the description of the original implementation by quirk id (``Q`` + number,
an entry of its quirk section) and by section number ("section N.M", "spec N.M", "spec's section N.M", "§N.M",
lists such as "sections N.M and N.M" and ranges "N.M-N.M"). A citation nobody can look up is a broken reference,
so each one must name a numbered heading or a quirk entry of the document. The quirk entries themselves must say
what the original does and what cjepa does, and the config switches they name must be real keys and values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from cjepa.config import ConfigError, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "docs" / "reference-spec.md"
SCANNED_DIRS = ("cjepa", "kernels", "launchers", "benchmarks", "configs", "tests", "docs")
SCANNED_FILES = ("README.md", "benchmarks/README.md")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".sh"}

# Text that looks like a citation but is not one, per file (path relative to the root -> regex blanked before
# scanning). Keep each entry narrow and say why.
NOT_CITATIONS = {
    # The VQA metrics test names its hand-made questions by a capital Q and a number, then the question type.
    "tests/eval/vqa/test_metrics.py": r"\bQ\d+ (?:descriptive|counterfactual|predictive|explanatory)\b",
}

_ID = r"(?:\d+(?:\.\d+)*|[A-Z]\.\d+)"
QUIRK = re.compile(r"(?<![\w.])Q(\d+)(?!\w)")
SECTION = re.compile(
    rf"(?:§\s*|\bspec(?:'s)?\s+(?:sections?\s+)?|\bsections?\s+)({_ID}(?:\s*(?:,|and|-|–|to)\s*{_ID})*)(?![\w.]*\w)"
)
# "Rajbhandari et al. 2020, section 5" cites that paper, not the spec.
FOREIGN = re.compile(r"et al\.?,? \d{4},?\s*$")
HEADING = re.compile(r"^#{2,4}\s+(?:Appendix\s+)?(\d+(?:\.\d+)*|[A-Z](?:\.\d+)?)[.\s]")
QUIRK_HEADING = re.compile(r"^###\s+Q(\d+)\.\s")


@dataclass(frozen=True)
class Citation:
    where: str  # path:line
    text: str  # the citation as written
    kind: str  # "quirk" or "section"
    target: str  # quirk number or section id


def spec_targets(text: str) -> tuple[set[str], set[str]]:
    """(section ids, quirk numbers) of the headings of the spec document."""
    sections, quirks = set(), set()
    for line in text.splitlines():
        if m := QUIRK_HEADING.match(line):
            quirks.add(m.group(1))
        elif m := HEADING.match(line):
            sections.add(m.group(1))
    return sections, quirks


def citations_in(text: str, rel: str) -> list[Citation]:
    """Quirk and section citations of one file, with path:line."""
    if rel in NOT_CITATIONS:
        text = re.sub(NOT_CITATIONS[rel], lambda m: " " * len(m.group(0)), text)
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{rel}:{lineno}"
        for m in QUIRK.finditer(line):
            found.append(Citation(where, m.group(0), "quirk", m.group(1)))
        for m in SECTION.finditer(line):
            if FOREIGN.search(line[: m.start()]):
                continue
            for target in re.findall(_ID, m.group(1)):
                found.append(Citation(where, m.group(0).strip(), "section", target))
    return found


def scanned_files() -> list[Path]:
    files = {ROOT / f for f in SCANNED_FILES}
    for d in SCANNED_DIRS:
        files.update(p for p in (ROOT / d).rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    # This file's examples are test inputs, not citations.
    return sorted(p for p in files if p.is_file() and "__pycache__" not in p.parts and p != Path(__file__).resolve())


def unresolved(citations: list[Citation], sections: set[str], quirks: set[str]) -> list[str]:
    return [
        f"{c.where}: {c.text!r} cites {'quirk Q' if c.kind == 'quirk' else 'section '}{c.target}, "
        f"which docs/reference-spec.md does not have"
        for c in citations
        if c.target not in (quirks if c.kind == "quirk" else sections)
    ]


def repo_citations() -> list[Citation]:
    out = []
    for path in scanned_files():
        out += citations_in(path.read_text(encoding="utf-8", errors="replace"), str(path.relative_to(ROOT)))
    return out


def test_every_citation_in_the_repository_resolves():
    sections, quirks = spec_targets(SPEC.read_text(encoding="utf-8"))
    cites = repo_citations()
    assert len({c.target for c in cites if c.kind == "quirk"}) >= 15, "the scanner no longer finds the quirk ids"
    assert len({c.target for c in cites if c.kind == "section"}) >= 20, "the scanner no longer finds the sections"
    bad = unresolved(cites, sections, quirks)
    assert not bad, "unresolved citations:\n" + "\n".join(bad)


def test_the_scanner_reads_every_citation_form():
    text = (
        "a (Q3) b Q6/Q22, section 1.9; spec 4.1; the spec's section 3.2; spec sections 2.6, 2.7, 3\n"
        "sections 1.8 and 2.2 of the spec; sections 4.2-4.6; §6.1; spec A.5\n"
        "Rajbhandari et al. 2020, section 5; FAQ1 and Q12x are not quirk ids\n"
    )
    got = [(c.where, c.kind, c.target) for c in citations_in(text, "f.py")]
    assert got == [
        ("f.py:1", "quirk", "3"),
        ("f.py:1", "quirk", "6"),
        ("f.py:1", "quirk", "22"),
        ("f.py:1", "section", "1.9"),
        ("f.py:1", "section", "4.1"),
        ("f.py:1", "section", "3.2"),
        ("f.py:1", "section", "2.6"),
        ("f.py:1", "section", "2.7"),
        ("f.py:1", "section", "3"),
        ("f.py:2", "section", "1.8"),
        ("f.py:2", "section", "2.2"),
        ("f.py:2", "section", "4.2"),
        ("f.py:2", "section", "4.6"),
        ("f.py:2", "section", "6.1"),
        ("f.py:2", "section", "A.5"),
    ]


def test_an_unresolved_citation_names_file_line_and_text():
    sections, quirks = spec_targets("## 1. A\n### 1.2 B\n## 11. Quirks\n### Q1. C\n## Appendix A. D\n### A.5 E\n")
    assert sections == {"1", "1.2", "11", "A", "A.5"} and quirks == {"1"}
    cites = citations_in("x = 1  # see section 1.2 and Q1\ny = 2  # see spec 1.3 (Q2)\n", "cjepa/m.py")
    assert unresolved(cites, sections, quirks) == [
        "cjepa/m.py:2: 'Q2' cites quirk Q2, which docs/reference-spec.md does not have",
        "cjepa/m.py:2: 'spec 1.3' cites section 1.3, which docs/reference-spec.md does not have",
    ]


def _quirk_entries(text: str) -> dict[str, str]:
    """Quirk number -> the entry's text (up to the next heading)."""
    entries, current = {}, None
    for line in text.splitlines():
        if m := QUIRK_HEADING.match(line):
            current = m.group(1)
            entries[current] = ""
        elif line.startswith("#"):
            current = None
        elif current is not None:
            entries[current] += line + "\n"
    return entries


def test_quirk_entries_are_complete():
    entries = _quirk_entries(SPEC.read_text(encoding="utf-8"))
    assert sorted(entries, key=int) == [str(i) for i in range(1, 24)]
    for q, body in entries.items():
        assert "* Original:" in body, f"Q{q}: says nothing about what the original does"
        assert "* cjepa:" in body, f"Q{q}: says nothing about what cjepa does"


# Backticked dotted keys in the lines that name cjepa's behaviour or its switches (not the original's own keys).
_SWITCH_LINE = re.compile(r"^\* (?:cjepa|Original behaviour|Other choices):")
_CONFIG_KEY = re.compile(r"`([a-z_]+(?:\.[a-z_0-9]+)+)(=[^`\s]+)?`")


def _switches(text: str) -> list[tuple[str, str]]:
    out, in_switch_bullet = [], False
    for q, body in _quirk_entries(text).items():
        for line in body.splitlines():
            if line.startswith("* "):
                in_switch_bullet = bool(_SWITCH_LINE.match(line))
            if in_switch_bullet:
                out += [(f"Q{q}", key + (value or "")) for key, value in _CONFIG_KEY.findall(line)]
    return out


def test_quirk_switches_are_real_config_keys_and_values():
    switches = _switches(SPEC.read_text(encoding="utf-8"))
    assert len(switches) >= 15, "the quirk section no longer names cjepa's switches"
    for quirk, text in switches:
        override = text if "=" in text else None
        try:
            if override:
                load_config(overrides=[override])
            else:
                _get_key(text)
        except (ConfigError, KeyError) as err:
            pytest.fail(f"docs/reference-spec.md {quirk}: `{text}` is not a valid cjepa config switch: {err}")


def _get_key(dotted: str) -> None:
    cfg = load_config()
    nested = parse_override(dotted + "=x")
    obj = cfg
    while isinstance(nested, dict):
        ((key, nested),) = nested.items()
        if not hasattr(obj, key):
            raise KeyError(dotted)
        obj = getattr(obj, key)
