"""Checkpoints as directories of state_dicts, written atomically.

``checkpoints/step_0001234/`` holds ``model.pt`` (the model state_dict; loads with ``weights_only=True``),
``train_state.pt`` (optimizer, scheduler, step, RNG states, task state; also plain tensors and containers),
``config.yaml`` (fully resolved) and ``meta.json`` (step, git SHA, versions, world size, wall time). A
checkpoint is written into a temporary directory and renamed into place, so a crash mid-write never leaves a
half checkpoint, and the previous one stays. ``meta.json`` is written last inside the temporary directory:
a directory without it is not a checkpoint. A checkpoint that cannot be read anyway (a file damaged later) is
renamed ``corrupt-step_XXXXXXX`` by the resuming trainer (:func:`set_aside`), which no longer counts as one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

STEP_DIR = "step_{:07d}"


class CheckpointError(ValueError):
    """A checkpoint path is missing or holds something we cannot load; the message names it."""


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors / plain containers (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seed_rngs(seed: int) -> None:
    """Seed every generator :func:`rng_state` saves (torch with CUDA, numpy's and python's global ones).

    The project draws from its own seeded generators; seeding the global ones too makes a checkpoint's RNG state,
    and anything a library draws from them, a function of the seed instead of the process's start-up entropy.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict,
    train_state: dict,
    config_yaml: str,
    meta: dict,
    keep: int = 2,
    extra_writer=None,
) -> Path:
    """Write checkpoints/step_XXXXXXX atomically; keep the newest `keep` (0 = all). Returns its path.

    ``model_state=None`` means ``extra_writer`` writes ``model.pt`` itself (DeepSpeed: from the fp32 master
    weights of its shards); a checkpoint without ``model.pt`` is never published."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / STEP_DIR.format(step)
    tmp = root / f".tmp-{STEP_DIR.format(step)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    if model_state is not None:
        torch.save(model_state, tmp / "model.pt")
    torch.save(train_state, tmp / "train_state.pt")
    (tmp / "config.yaml").write_text(config_yaml)
    if extra_writer is not None:
        extra_writer(tmp)
    if not (tmp / "model.pt").is_file():
        raise CheckpointError(f"checkpoint {final.name}: no model.pt was written (model_state=None and the engine "
                              "wrote none)")
    (tmp / "meta.json").write_text(json.dumps({**meta, "step": step, "saved_at": time.time()}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if (p / "meta.json").is_file()]
    return sorted(done, key=checkpoint_step)


def latest_checkpoint(run_dir: Path) -> Optional[Path]:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint dir, a run dir (its latest checkpoint), or a weights file -> the file or dir to load."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.is_dir():
        if (p / "model.pt").is_file():
            return p
        latest = latest_checkpoint(p)
        if latest is None:
            raise CheckpointError(f"{p} is neither a checkpoint directory (no model.pt) nor a run directory with "
                                  "checkpoints")
        return latest
    return p


def _strip(sd: dict, prefixes: tuple[str, ...]) -> dict:
    for pre in prefixes:
        if sd and all(k.startswith(pre) for k in sd):
            sd = {k[len(pre):]: v for k, v in sd.items()}
    return sd


def load_model_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state_dict from our checkpoints or a plain state_dict file (e.g. the released C-JEPA
    ``*_predictor.ckpt``), always with ``weights_only=True``. Wrappers like ``{"state_dict": ...}`` and
    ``module.`` prefixes (DDP) are unwrapped."""
    p = resolve_checkpoint(path)
    f = p / "model.pt" if p.is_dir() else p
    try:
        sd = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"{f} cannot be loaded as a state_dict with weights_only=True ({type(err).__name__}: {err}). "
            "Pickled whole modules (the original Push-T *_object.ckpt) must first be converted in an environment that "
            "has their classes: torch.save(torch.load(path, weights_only=False).state_dict(), 'state_dict.pt')"
        ) from err
    return _as_state_dict(sd, f)


def _as_state_dict(sd: Any, f: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded model file: ``{"state_dict": ...}`` wrappers and ``module.`` prefixes (DDP) removed."""
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{f} does not hold a state_dict of tensors")
    return _strip(sd, ("module.",))


def _load_file(f: Path) -> Any:
    """torch.load(weights_only=True) of a file we wrote; a truncated or damaged file is a CheckpointError naming it
    (torch alone says "OSError: Invalid argument" without the path, or advises weights_only=False, which does
    not apply to a file that was cut short)."""
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{f} is missing") from None
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{f} is truncated or corrupt ({type(err).__name__}: {first})") from err


def load_train_state(ckpt_dir: Path) -> dict:
    return _load_file(Path(ckpt_dir) / "train_state.pt")


def load_for_resume(ckpt_dir: Path, model: bool = True) -> tuple[dict, Optional[dict]]:
    """(train state, model state_dict or None) of a checkpoint directory; CheckpointError naming the file that
    cannot be read. ``model=False`` when the engine reads its own files (DeepSpeed's shards)."""
    state = load_train_state(ckpt_dir)
    if not model:
        return state, None
    f = Path(ckpt_dir) / "model.pt"
    return state, _as_state_dict(_load_file(f), f)


def set_aside(ckpt_dir: Path) -> Path:
    """Rename an unreadable checkpoint to ``corrupt-step_XXXXXXX`` (kept for inspection): it no longer counts as a
    checkpoint, so it is neither resumed from nor kept by pruning in place of the newer ones written after it."""
    ckpt_dir = Path(ckpt_dir)
    dest = ckpt_dir.with_name(f"corrupt-{ckpt_dir.name}")
    n = 1
    while dest.exists():
        dest, n = ckpt_dir.with_name(f"corrupt-{ckpt_dir.name}-{n}"), n + 1
    os.replace(ckpt_dir, dest)
    return dest


def checkpoint_step(ckpt_dir: Path) -> int:
    return int(Path(ckpt_dir).name.split("_")[1])
