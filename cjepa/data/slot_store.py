"""Sharded slot store: write per-video slot tensors once, stream them many times.

Layout of a store rooted at ROOT::

    ROOT/meta.json                        format, version, S, D, dtype, producer (encoder config + checkpoint hash)
    ROOT/<split>/index.json               {"videos": [{"key", "shard", "offset", "frames"}...], "shards": [...]}
    ROOT/<split>/shard-00000.npy          all frames of the shard's videos, concatenated: (F, S, D)
    ROOT/<split>/shard-00000.<extra>.npy  optional per-frame arrays with the same row layout (Push-T:
                                          proprio (F, 4), action (F, 2), state (F, 7))

Shards are plain ``.npy`` files read with ``mmap_mode="r"``: opening a split costs one JSON read, and a video
is a zero-copy slice. Every shard and index is written to a temporary name and renamed, so an interrupted
writer leaves a valid store holding every video flushed so far, and re-opening the writer resumes after
them. Readers also accept the original pickle ``{split: {video: float[T, S, D]}}`` (:func:`load_pickle_split`),
read through :func:`load_slot_pickle`, which refuses any pickle that asks for more than that format holds.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

FORMAT = "cjepa-slot-store"
VERSION = 1


class SlotStoreError(ValueError):
    """A slot store or slot pickle is missing, malformed, or inconsistent; the message names the file."""


class UnsafePickleError(SlotStoreError):
    """A slot pickle names a global outside the slot-pickle format (it could run code if loaded)."""


def _numpy_core(submodule: str):
    # numpy 2 moved numpy.core to numpy._core (numpy 1.26 has both): pickles of either name resolve to this numpy's.
    try:
        return importlib.import_module(f"numpy._core.{submodule}")
    except ImportError:  # numpy < 1.26
        return importlib.import_module(f"numpy.core.{submodule}")


# Every global that a pickle of {split: {video: ndarray}} (any protocol 0-5, numpy 1.x or 2.x, arrays, numpy
# scalars and dtypes) names. Plain dicts, lists, tuples, strings and numbers need no global at all.
_SLOT_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_core("multiarray")._reconstruct,  # arrays, protocol < 5
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_core("multiarray")._reconstruct,
    ("numpy.core.multiarray", "scalar"): lambda: _numpy_core("multiarray").scalar,  # np.float32(...) etc.
    ("numpy._core.multiarray", "scalar"): lambda: _numpy_core("multiarray").scalar,
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_core("numeric")._frombuffer,  # arrays, protocol 5
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_core("numeric")._frombuffer,
    ("_codecs", "encode"): lambda: __import__("_codecs").encode,  # bytes in protocols 0-2 (str -> latin-1 bytes)
    ("builtins", "bytes"): lambda: bytes,
    ("__builtin__", "bytes"): lambda: bytes,  # protocol 0-2 spelling
    ("collections", "OrderedDict"): lambda: __import__("collections").OrderedDict,
}


class _SlotUnpickler(pickle.Unpickler):
    def __init__(self, fh, path: Path):
        super().__init__(fh)
        self.path = path

    def find_class(self, module: str, name: str):
        # Globals are the only way a pickle reaches code (os.system, builtins.eval, any __reduce__): admit the
        # format's own and nothing else.
        make = _SLOT_PICKLE_GLOBALS.get((module, name))
        if make is None:
            raise UnsafePickleError(
                f"{self.path}: refused to load: the pickle asks for {module}.{name}, which a slot pickle never holds "
                "(only dicts, lists, strings, numbers and numpy arrays are admitted; a foreign pickle can run code)"
            )
        return make()


def load_slot_pickle(path: str | os.PathLike) -> Any:
    """Unpickle a slot pickle (the original format or its proprio/action meta pickles) without running its code.

    The one reader of slot pickles: everything that reads one goes through here.
    """
    path = Path(path)
    if not path.is_file():
        raise SlotStoreError(f"slot pickle not found: {path}")
    with open(path, "rb") as fh:
        try:
            return _SlotUnpickler(fh, path).load()
        except UnsafePickleError:
            raise
        except Exception as err:  # truncated or corrupt pickles raise many different types
            raise SlotStoreError(f"{path} is not a readable slot pickle: {type(err).__name__}: {err}") from err


def _atomic_write_bytes(path: Path, writer) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        writer(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, lambda fh: fh.write(json.dumps(obj, indent=1).encode()))


class SlotStoreWriter:
    """Append videos to one split of a store; resumable (keys already stored are reported by ``in``)."""

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *,
        num_slots: int,
        slot_dim: int,
        dtype: str = "float32",
        producer: Optional[dict] = None,
        shard_frames: int = 1 << 16,
    ):
        self.root, self.split = Path(root), split
        self.dir = self.root / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.num_slots, self.slot_dim, self.dtype = num_slots, slot_dim, np.dtype(dtype)
        self.shard_frames = shard_frames
        meta_path = self.root / "meta.json"
        meta = {"format": FORMAT, "version": VERSION, "num_slots": num_slots, "slot_dim": slot_dim,
                "dtype": str(self.dtype), "producer": producer or {}}
        if meta_path.exists():
            old = read_meta(self.root)
            for k in ("num_slots", "slot_dim", "dtype"):
                if old[k] != meta[k]:
                    raise SlotStoreError(f"{meta_path}: existing store has {k}={old[k]}, writer asked for {meta[k]}")
            if producer and old.get("producer") and old["producer"] != producer:
                raise SlotStoreError(f"{meta_path}: store was produced by a different encoder/config; use a new "
                                     "directory")
        else:
            _atomic_write_json(meta_path, meta)
        self.index = _read_index(self.dir) if (self.dir / "index.json").exists() else {"videos": [], "shards": []}
        self._keys = {v["key"] for v in self.index["videos"]}
        self._pending: list[tuple[str, np.ndarray, dict[str, np.ndarray]]] = []
        self._pending_frames = 0

    def __contains__(self, key: str) -> bool:
        return key in self._keys or any(k == key for k, _, _ in self._pending)

    def __len__(self) -> int:
        return len(self._keys) + len(self._pending)

    def add(self, key: str, slots: np.ndarray, **extras: np.ndarray) -> None:
        slots = np.asarray(slots)
        if slots.ndim != 3 or slots.shape[1:] != (self.num_slots, self.slot_dim):
            raise SlotStoreError(
                f"video {key!r}: slots must be (T, {self.num_slots}, {self.slot_dim}); got {slots.shape}"
            )
        if not np.isfinite(slots).all():
            raise SlotStoreError(f"video {key!r}: slots contain NaN or inf")
        if key in self:
            raise SlotStoreError(f"video {key!r} is already in {self.dir}")
        for name, arr in extras.items():
            if len(arr) != len(slots):
                raise SlotStoreError(f"video {key!r}: extra {name!r} has {len(arr)} frames, slots have {len(slots)}")
        self._pending.append((key, slots.astype(self.dtype, copy=False),
                              {k: np.asarray(v, np.float32) for k, v in extras.items()}))
        self._pending_frames += len(slots)
        if self._pending_frames >= self.shard_frames:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        shard_id = len(self.index["shards"])
        name = f"shard-{shard_id:05d}"
        frames = np.concatenate([s for _, s, _ in self._pending], axis=0)
        _atomic_write_bytes(self.dir / f"{name}.npy", lambda fh: np.save(fh, frames))
        extra_names = sorted(self._pending[0][2])
        if any(sorted(e) != extra_names for _, _, e in self._pending):
            raise SlotStoreError(f"{self.dir}: every video of a shard must carry the same extras")
        for ex in extra_names:
            arr = np.concatenate([e[ex] for _, _, e in self._pending], axis=0)
            _atomic_write_bytes(self.dir / f"{name}.{ex}.npy", lambda fh, a=arr: np.save(fh, a))
        offset = 0
        for key, slots, _ in self._pending:
            self.index["videos"].append({"key": key, "shard": shard_id, "offset": offset, "frames": len(slots)})
            self._keys.add(key)
            offset += len(slots)
        self.index["shards"].append({"name": name, "frames": offset, "extras": extra_names})
        _atomic_write_json(self.dir / "index.json", self.index)  # the commit point of this shard
        self._pending, self._pending_frames = [], 0

    def close(self) -> None:
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        # Keep what was added before an error too: those videos are complete.
        self.flush()


def read_meta(root: str | os.PathLike) -> dict:
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise SlotStoreError(f"not a slot store: {path} is missing")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise SlotStoreError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    return meta


def _read_index(split_dir: Path) -> dict:
    path = split_dir / "index.json"
    if not path.is_file():
        raise SlotStoreError(f"slot store split missing: {path} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SlotStoreError(f"{path} is corrupt: {err}") from err


class SlotSplit(Mapping):
    """Read-only mapping video key -> (T, S, D) array (memory-mapped), sorted by key; extras by name."""

    def __init__(self, root: str | os.PathLike, split: str):
        self.dir = Path(root) / split
        self.index = _read_index(self.dir)
        self._videos = {v["key"]: v for v in self.index["videos"]}
        self._order = sorted(self._videos)
        self._shards: dict[tuple[int, str], np.ndarray] = {}

    def _shard(self, shard: int, extra: str = "") -> np.ndarray:
        k = (shard, extra)
        if k not in self._shards:
            name = self.index["shards"][shard]["name"] + (f".{extra}" if extra else "") + ".npy"
            path = self.dir / name
            if not path.is_file():
                raise SlotStoreError(f"slot store shard missing: {path}")
            self._shards[k] = np.load(path, mmap_mode="r")
        return self._shards[k]

    def __getitem__(self, key: str) -> np.ndarray:
        v = self._videos[key]
        return self._shard(v["shard"])[v["offset"] : v["offset"] + v["frames"]]

    def extra(self, key: str, name: str) -> np.ndarray:
        v = self._videos[key]
        if name not in self.index["shards"][v["shard"]]["extras"]:
            raise SlotStoreError(f"{self.dir}: video {key!r} has no extra {name!r}")
        return self._shard(v["shard"], name)[v["offset"] : v["offset"] + v["frames"]]

    @property
    def extras(self) -> list[str]:
        shards = self.index["shards"]
        return list(shards[0]["extras"]) if shards else []

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


def load_pickle_split(path: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """One split of the original slot pickle ``{split: {video: float[T, S, D]}}``, keys sorted."""
    path = Path(path)
    data = load_slot_pickle(path)
    if not isinstance(data, dict) or split not in data:
        have = list(data) if isinstance(data, dict) else type(data).__name__
        raise SlotStoreError(f"{path}: no split {split!r} (found {have})")
    out = {}
    for key in sorted(data[split]):
        arr = np.asarray(data[split][key], dtype=np.float32)
        if arr.ndim != 3:
            raise SlotStoreError(f"{path}: video {key!r} of split {split!r} has shape {arr.shape}, expected (T, S, D)")
        if not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0].tolist()
            raise SlotStoreError(f"{path}: video {key!r} of split {split!r} has NaN/inf slots (first at [t, s, d] = "
                                 f"{bad})")
        out[key] = arr
    return out


def open_split(source: str, path: str, split: str) -> Mapping[str, np.ndarray]:
    """Slots of one split from a store directory or an original pickle."""
    if source == "store":
        read_meta(path)
        return SlotSplit(path, split)
    if source == "pickle":
        return load_pickle_split(path, split)
    raise SlotStoreError(f"unknown slot source {source!r}")


def export_pickle(splits: dict[str, Mapping[str, np.ndarray]], path: str | os.PathLike) -> None:
    """Write the original pickle format (float32 arrays), atomically."""
    data = {s: {k: np.asarray(v, dtype=np.float32) for k, v in m.items()} for s, m in splits.items()}
    _atomic_write_bytes(Path(path), lambda fh: pickle.dump(data, fh, protocol=4))
