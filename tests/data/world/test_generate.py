"""cjepa.data.world.generate: a video is a function of (config, seed, split, index); parallel splits are
byte-identical."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cjepa.data.shards import open_split
from cjepa.data.world.generate import config_fingerprint, generate_split, generate_video
from tests.data.conftest import TINY, tiny_world
from tests.helpers import REPO


def test_video_is_deterministic_in_seed_split_index():
    """Same (seed, split, index) -> identical frames, masks, annotation and questions; other index/split/seed ->
    different."""
    cfg = tiny_world()
    a, b = generate_video(cfg, "train", 4), generate_video(cfg, "train", 4)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert json.dumps(a.meta) == json.dumps(b.meta) and json.dumps(a.questions) == json.dumps(b.questions)
    for other in (generate_video(cfg, "train", 5), generate_video(cfg, "val", 4),
                  generate_video(tiny_world(seed=99), "train", 4)):
        assert not np.array_equal(other.frames, a.frames)


def test_video_contents():
    """Frames (T,H,W,3) uint8, masks use object_id+1, per-frame states for every object, collisions in the shown
    frames."""
    cfg = tiny_world()
    v = generate_video(cfg, "train", 1)
    T, H, W = cfg.num_frames, cfg.height, cfg.width
    assert v.frames.shape == (T, H, W, 3) and v.frames.dtype == np.uint8 and v.masks.shape == (T, H, W)
    ids = {o["object_id"] + 1 for o in v.meta["object_property"]}
    assert set(np.unique(v.masks)) <= ids | {0}
    assert len(v.meta["motion_trajectory"]) == T
    assert all(len(f["objects"]) == len(ids) for f in v.meta["motion_trajectory"])
    assert len(v.meta["collision"]) >= cfg.min_collisions
    assert all(0 < c["frame_id"] < T for c in v.meta["collision"])
    assert all(c["frame_id"] >= T for c in v.meta["future_collision"])
    assert v.meta["world"]["config_fingerprint"] == config_fingerprint(cfg)
    visible = [[o["inside_camera_view"] for o in f["objects"]] for f in v.meta["motion_trajectory"]]
    for t in range(T):  # an object is drawn at most where it exists; a visible object has pixels
        for o, vis in enumerate(visible[t]):
            if vis:
                assert (v.masks[t] == o + 1).any()


def test_parallel_split_equals_serial(tmp_path):
    """Two worker processes write byte-identical shards to one process (and the manifest says how they were made)."""
    cfg = tiny_world(shard_size=2)
    s1 = generate_split(cfg, "val", 3, tmp_path / "a", workers=1, progress=False)
    s2 = generate_split(cfg, "val", 3, tmp_path / "b", workers=2, progress=False)
    assert s1["videos"] == s2["videos"] == 3 and s2["workers"] == 2
    m1, m2 = open_split(tmp_path / "a", "val").manifest, open_split(tmp_path / "b", "val").manifest
    assert [s["sha256"] for s in m1["shards"]] == [s["sha256"] for s in m2["shards"]]
    assert m1["generator"]["name"] == "cjepa.data.world" and m1["config_version"] == config_fingerprint(cfg)
    assert m1["num_with_masks"] == m1["num_with_questions"] == m1["num_with_video_info"] == 3


def _session_processes(sid: int) -> list[int]:
    """The pids of the live (not zombie) processes of session ``sid`` (Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to find the worker processes")
def test_ctrl_c_stops_the_workers_and_exits_130(tmp_path):
    """Ctrl-C (SIGINT to the whole foreground process group, as a terminal sends it) during `cjepa data world` with
    worker processes: the command exits within seconds with code 130 and one line, no traceback, and no worker
    process is left rendering."""
    sizes = [f"world.{k}={v}" for k, v in TINY.items()]
    cmd = [sys.executable, "-m", "cjepa.cli", "data", "world", "--num-videos", "500", "--out", str(tmp_path),
           "--workers", "2",
           "--no-progress", *sizes]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((tmp_path / "train").glob("*.tar")):  # workers are rendering
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.time()
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 15 s after Ctrl-C; processes {_session_processes(proc.pid)}")
        assert time.time() - t0 < 10
        assert proc.returncode == 130, err
        assert "Traceback" not in err and err.strip().splitlines()[-1] == "cjepa data: interrupted", err
        deadline = time.time() + 5
        while _session_processes(proc.pid) and time.time() < deadline:
            time.sleep(0.1)
        assert _session_processes(proc.pid) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
