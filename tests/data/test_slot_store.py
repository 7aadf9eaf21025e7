"""Contracts of the sharded slot store and the original pickle format."""

import json
import os
import pickle
import re

import numpy as np
import pytest

from cjepa.data.slot_store import (
    SlotSplit,
    SlotStoreError,
    SlotStoreWriter,
    UnsafePickleError,
    export_pickle,
    load_pickle_split,
    load_slot_pickle,
    open_split,
)
from cjepa.tasks.predictor import load_pickle_split_2d


def videos(n, T=5, S=3, D=4, seed=0):
    g = np.random.default_rng(seed)
    return {f"video_{i:03d}": g.normal(size=(T + i, S, D)).astype(np.float32) for i in range(n)}


def test_round_trip_with_extras_and_several_shards(tmp_path):
    """Written videos read back bit-equal, sorted by key, across shard boundaries, with per-frame extras."""
    vids = videos(7)
    with SlotStoreWriter(tmp_path, "train", num_slots=3, slot_dim=4, shard_frames=12) as w:
        for k in reversed(list(vids)):
            w.add(k, vids[k], proprio=np.arange(len(vids[k]) * 4, dtype=np.float32).reshape(-1, 4))
    split = SlotSplit(tmp_path, "train")
    assert list(split) == sorted(vids)
    assert len(split.index["shards"]) > 1
    for k, v in vids.items():
        assert np.array_equal(split[k], v)
        assert split.extra(k, "proprio").shape == (len(v), 4)
    assert split.extras == ["proprio"]


def test_interrupted_writer_keeps_flushed_videos_and_resumes(tmp_path):
    """An exception mid-write keeps every flushed video; re-opening reports them and appends the rest."""
    vids = videos(4)
    keys = list(vids)
    with pytest.raises(RuntimeError):
        with SlotStoreWriter(tmp_path, "val", num_slots=3, slot_dim=4, shard_frames=1) as w:
            w.add(keys[0], vids[keys[0]])
            w.add(keys[1], vids[keys[1]])
            raise RuntimeError("killed")
    w = SlotStoreWriter(tmp_path, "val", num_slots=3, slot_dim=4)
    assert keys[0] in w and keys[1] in w and keys[2] not in w
    for k in keys[2:]:
        w.add(k, vids[k])
    w.close()
    assert sorted(SlotSplit(tmp_path, "val")) == keys


def test_bad_inputs_are_named(tmp_path):
    """Wrong shapes, NaNs, duplicates, mismatched stores and missing files raise errors naming the culprit."""
    w = SlotStoreWriter(tmp_path, "train", num_slots=3, slot_dim=4)
    with pytest.raises(SlotStoreError, match="'a'.*\\(T, 3, 4\\)"):
        w.add("a", np.zeros((5, 2, 4)))
    with pytest.raises(SlotStoreError, match="'b'.*NaN"):
        w.add("b", np.full((5, 3, 4), np.nan))
    w.add("c", np.zeros((5, 3, 4)))
    with pytest.raises(SlotStoreError, match="already"):
        w.add("c", np.zeros((5, 3, 4)))
    w.close()
    with pytest.raises(SlotStoreError, match="slot_dim"):
        SlotStoreWriter(tmp_path, "val", num_slots=3, slot_dim=8)
    with pytest.raises(SlotStoreError, match="meta.json is missing"):
        open_split("store", str(tmp_path / "nowhere"), "train")
    with pytest.raises(SlotStoreError, match="index.json not found"):
        SlotSplit(tmp_path, "test")
    (tmp_path / "train" / "index.json").write_text("{broken")
    with pytest.raises(SlotStoreError, match="corrupt"):
        SlotSplit(tmp_path, "train")


def test_original_pickle_read_and_export(tmp_path):
    """The original {split: {video: (T, S, D)}} pickle is read (keys sorted) and written back identically."""
    data = {"train": videos(3), "val": videos(2, seed=1)}
    path = tmp_path / "slots.pkl"
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    tr = load_pickle_split(path, "train")
    assert list(tr) == sorted(data["train"])
    export_pickle({"train": tr, "val": load_pickle_split(path, "val")}, tmp_path / "out.pkl")
    with open(tmp_path / "out.pkl", "rb") as fh:
        back = pickle.load(fh)
    for s in data:
        for k, v in data[s].items():
            assert np.array_equal(back[s][k], v)
    with pytest.raises(SlotStoreError, match="no split 'test'"):
        load_pickle_split(path, "test")
    with open(tmp_path / "nan.pkl", "wb") as fh:
        pickle.dump({"train": {"v": np.full((3, 2, 2), np.nan, np.float32)}}, fh)
    with pytest.raises(SlotStoreError, match="'v'.*NaN"):
        load_pickle_split(tmp_path / "nan.pkl", "train")
    (tmp_path / "trunc.pkl").write_bytes(path.read_bytes()[:50])
    with pytest.raises(SlotStoreError, match="not a readable slot pickle"):
        load_pickle_split(tmp_path / "trunc.pkl", "train")


def test_meta_records_producer(tmp_path):
    """meta.json records S, D, dtype and the producer (encoder config / checkpoint hash)."""
    SlotStoreWriter(tmp_path, "train", num_slots=3, slot_dim=4, producer={"ckpt_sha256": "abc"}).close()
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["num_slots"] == 3 and meta["producer"] == {"ckpt_sha256": "abc"}


class _RunsCode:
    """Unpickling this calls os.system: what a hostile 'slot pickle' would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_naming_the_global(tmp_path):
    """A slot pickle whose unpickling calls os.system is refused before the call: no marker file, the error names
    the file and the forbidden global; the proprio/action meta pickles of Push-T go through the same reader."""
    marker = tmp_path / "pwned"
    path = tmp_path / "slots.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"train": {"v": _RunsCode(marker)}}, fh)
    forbidden = f"{os.system.__module__}.system"  # posix.system on Linux
    with pytest.raises(UnsafePickleError, match=re.escape(f"{path}: refused to load: the pickle asks for {forbidden}")):
        load_pickle_split(path, "train")
    with pytest.raises(UnsafePickleError, match=re.escape(forbidden)):
        load_pickle_split_2d(str(path), "train")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_legitimate_slot_pickles_load_identically_under_every_protocol(tmp_path, protocol):
    """Arrays (float32/float64, C and Fortran order), numpy scalars and dtypes in dicts and lists, written with any
    protocol, load through the restricted reader exactly as pickle.load reads them."""
    data = {
        "train": videos(3),
        "val": {"v": np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4))},
        "meta": {"fps": np.float32(10.0), "n": np.int64(3), "dtype": np.dtype("float32"), "names": ["a", "b"],
                 "x": 1.5},
    }
    path = tmp_path / "slots.pkl"
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    with open(path, "rb") as fh:
        expected = pickle.load(fh)
    got = load_slot_pickle(path)
    assert got.keys() == expected.keys() and got["meta"] == expected["meta"]
    for s in ("train", "val"):
        for k, v in expected[s].items():
            assert got[s][k].dtype == v.dtype and np.array_equal(got[s][k], v)
    tr = load_pickle_split(path, "train")
    assert list(tr) == sorted(data["train"]) and all(np.array_equal(tr[k], data["train"][k]) for k in tr)


@pytest.mark.parametrize("core", [b"numpy.core", b"numpy._core"])
def test_numpy1_and_numpy2_spellings_of_array_pickles_load(tmp_path, core):
    """numpy 1.x writes numpy.core.multiarray._reconstruct, numpy 2.x numpy._core.multiarray: both are admitted."""
    raw = pickle.dumps({"train": videos(2), "s": np.float32(2.5)}, protocol=2)  # protocol 2: globals as text lines
    written = b"numpy._core" if b"numpy._core.multiarray\n_reconstruct" in raw else b"numpy.core"
    (tmp_path / "slots.pkl").write_bytes(raw.replace(written + b".multiarray", core + b".multiarray"))
    assert core + b".multiarray\nscalar" in (tmp_path / "slots.pkl").read_bytes()
    tr = load_pickle_split(tmp_path / "slots.pkl", "train")
    assert all(np.array_equal(tr[k], v) for k, v in videos(2).items())
    assert load_slot_pickle(tmp_path / "slots.pkl")["s"] == np.float32(2.5)
