"""Compare two `cjepa demo` output directories artefact by artefact: which ones differ, and by how much.

Compared: every member of every world shard (mp4, masks, annotation, questions) and the manifests; every file of
the slot store; every tensor of every checkpoint (weights, optimizer, RNG states); every line of both trainers'
metrics.jsonl; both summaries and demo_summary.json. Left out as timings: wall times, dates, throughput, process
ids; paths are compared with the run directory written as <out>. Tensors that differ report their largest
absolute difference.

    python benchmarks/compare_demo_runs.py runs/demo_a runs/demo_b
    python benchmarks/compare_demo_runs.py runs/demo_a runs/demo_b --note "same seed, OMP_NUM_THREADS=2" --save
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_rows  # noqa: E402

TIMING_KEYS = {"time", "wall_time_s", "wall_s", "stage_s", "date", "saved_at", "created_unix", "train/samples_per_s",
               "pid", "started_at"}


def normal_json(value, out: Path):
    """A JSON value without its timing fields, with the run directory written as <out> (comparable across runs)."""
    if isinstance(value, dict):
        return {k: normal_json(v, out) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, (list, tuple)):
        return [normal_json(v, out) for v in value]
    return value.replace(str(out), "<out>") if isinstance(value, str) else value


def _tensor_diffs(a, b, where: str) -> list[str]:
    if torch.is_tensor(a):
        if not torch.is_tensor(b) or a.shape != b.shape or a.dtype != b.dtype:
            return [f"{where}: shape/dtype"]
        if torch.equal(a, b):
            return []
        return [f"{where}: max |diff| {(a.double() - b.double()).abs().max().item():.3g}"]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() != b.keys():
            return [f"{where}: keys"]
        return [d for k in sorted(a.keys() - TIMING_KEYS, key=str) for d in _tensor_diffs(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [f"{where}: length"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _tensor_diffs(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"[:200]]


def compare(a: Path, b: Path) -> tuple[int, list[str]]:
    """(artefacts compared, one line per difference)."""
    diffs, n = [], 0
    for p in sorted(x for x in a.rglob("*") if x.is_file()):
        rel = p.relative_to(a)
        q = b / rel
        if rel.parts[1:2] == ("tb",) or rel.suffix in (".gif", ".lock", ".txt", ".idx",
                                                       ".yaml") or rel.name == "config_history.jsonl":
            continue  # tensorboard events, images, the lock, environment dumps, byte offsets, configs (paths)
        n += 1
        if not q.is_file():
            diffs.append(f"{rel}: missing in {b}")
        elif rel.suffix == ".tar":
            with tarfile.open(p) as ta, tarfile.open(q) as tb:
                ma = {m.name: ta.extractfile(m).read() for m in ta if m.isfile()}
                mb = {m.name: tb.extractfile(m).read() for m in tb if m.isfile()}
            diffs += [f"{rel}: member {k}" for k in sorted(ma.keys() | mb.keys()) if ma.get(k) != mb.get(k)]
        elif rel.suffix == ".pt":
            diffs += [f"{rel}{d}" for d in _tensor_diffs(torch.load(p, weights_only=False),
                                                         torch.load(q, weights_only=False), "")]
        elif rel.suffix == ".jsonl":
            la, lb = p.read_text().splitlines(), q.read_text().splitlines()
            same = len(la) == len(lb) and all(normal_json(json.loads(x), a) == normal_json(json.loads(y), b) for x,
                                              y in zip(la, lb))
            diffs += [] if same else [f"{rel}: lines differ"]
        elif rel.suffix == ".json":
            diffs += [] if normal_json(json.loads(p.read_text()),
                                       a) == normal_json(json.loads(q.read_text()), b) else [f"{rel}: differs"]
        elif p.read_bytes() != q.read_bytes():
            diffs.append(f"{rel}: bytes")
    return n, diffs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--note", default="", help="how the two runs were made (kept in the row)")
    p.add_argument("--save", action="store_true", help="append a row to benchmarks/results/")
    args = p.parse_args(argv)
    n, diffs = compare(Path(args.a).resolve(), Path(args.b).resolve())  # the runs wrote absolute paths
    print("\n".join(diffs) if diffs else "no differences")
    print(f"{n} artefacts compared, {len(diffs)} differences")
    if args.save:
        stages = sorted({d.split("/")[0] for d in diffs})
        row = {"a": args.a, "b": args.b, "note": args.note, "artefacts": n, "differences": len(diffs),
               "stages_differing": stages, "first_differences": diffs[:20]}
        print("row ->", write_rows([row], torch.device("cpu"), "demo_reproducibility"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
