"""Same seed, same result: the whole `cjepa demo` chain, run twice in fresh processes with the same thread count on
CPU, writes bit-identical world shards, slots, checkpoints, losses and summary (timings, dates and paths aside)."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from benchmarks.compare_demo_runs import TIMING_KEYS, normal_json
from tests.commands.test_demo import ENCODER, PREDICTOR
from tests.helpers import REPO

# The second run renders in its own process and fills freed heap memory before every video it encodes: the
# bytes must not depend on what the process did before (x264's macroblock-tree pass once let them).
DIRTY_HEAP_DEMO = """
import sys
import cjepa.data.video as video
from benchmarks.common import fill_freed_heap
from cjepa.cli import main

encode = video.encode_video

def encode_on_a_dirty_heap(*args, **kwargs):
    fill_freed_heap(0xFF)
    return encode(*args, **kwargs)

video.encode_video = encode_on_a_dirty_heap
sys.exit(main(sys.argv[1:]))
"""


def _demo(out: Path, *, render_workers: int, hash_seed: int, dirty_heap: bool = False) -> subprocess.Popen:
    # Two threads in both runs: the threaded CPU kernels (reductions split between threads) are part of what must
    # repeat. The render worker count may differ: the world is the same whatever the pool. Each run hashes strings
    # with its own seed, so nothing may follow the iteration order of a set or dict of strings.
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "PYTHONHASHSEED": str(hash_seed)}
    args = ["demo", "--out", str(out), "--train-videos", "4", "--val-videos", "2", "--no-progress", *ENCODER,
            "--encoder", f"world.workers={render_workers}", *PREDICTOR]
    cmd = [sys.executable, "-c", DIRTY_HEAP_DEMO, *args] if dirty_heap else [sys.executable, "-m", "cjepa.cli", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _json(path: Path, out: Path):
    return normal_json(json.loads(path.read_text()), out)


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def _assert_same_tensors(a, b, where: str) -> None:
    """Nested containers of tensors and plain values: equal bit for bit, tensors by torch.equal; timings aside."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a.keys() - TIMING_KEYS:
            _assert_same_tensors(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.glob(pattern) if p.is_file())


def test_demo_chain_twice_is_bit_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    # at once: the runs also differ in timing; a renders in a pool of two workers, b in its own process
    procs = [_demo(a, render_workers=2, hash_seed=1), _demo(b, render_workers=1, hash_seed=2, dirty_heap=True)]
    for proc in procs:
        log = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, log[-3000:]

    # 1. world shards: every member of every shard (mp4, masks, annotation, questions), and the manifests
    shards = _files(a, "world/*/*.tar")
    assert shards and shards == _files(b, "world/*/*.tar")
    for rel in shards:
        ma, mb = _tar_members(a / rel), _tar_members(b / rel)
        assert ma.keys() == mb.keys(), rel
        assert [k for k in ma if ma[k] != mb[k]] == [], f"{rel}: members differ"
    for split in ("train", "val"):
        rel = Path("world", split, "manifest.json")
        ma, mb = _json(a / rel, a), _json(b / rel, b)
        assert (ma["generator"]["config"].pop("workers"),
                mb["generator"]["config"].pop("workers")) == (2, 1)  # recorded
        assert ma == mb, rel

    # 2. slots of every video, their index and the store's metadata
    slots = _files(a, "slots/**/*")
    assert any(p.suffix == ".npy" for p in slots) and slots == _files(b, "slots/**/*")
    for rel in slots:
        if rel.suffix == ".json":
            assert _json(a / rel, a) == _json(b / rel, b), rel
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel

    # 3. both trainers: weights, optimizer and RNG state of every checkpoint, every logged loss, the summaries
    for stage in ("encoder", "predictor"):
        ckpts = _files(a, f"{stage}/checkpoints/*/*.pt")
        assert ckpts and ckpts == _files(b, f"{stage}/checkpoints/*/*.pt")
        for rel in ckpts:
            _assert_same_tensors(torch.load(a / rel, weights_only=False), torch.load(b / rel, weights_only=False),
                                 str(rel))
        la, lb = ((r / stage / "metrics.jsonl").read_text().splitlines() for r in (a, b))
        assert len(la) == len(lb) > 0 and any("train/loss" in line for line in la), stage
        for i, (x, y) in enumerate(zip(la, lb)):
            assert normal_json(json.loads(x), a) == normal_json(json.loads(y), b), f"{stage}/metrics.jsonl line {i + 1}"
        assert _json(a / stage / "summary.json", a) == _json(b / stage / "summary.json", b), stage

    # 4. the demo's summary: segmentation, swap rate, rollout errors and ratios
    sa, sb = _json(a / "demo_summary.json", a), _json(b / "demo_summary.json", b)
    assert sa["rollout_mse"] and sa == sb
