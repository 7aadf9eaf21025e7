"""Contracts of checkpoints: atomic directories, pruning, weights_only loading, clear errors."""

import random

import numpy as np
import pytest
import torch

from cjepa.utils.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_model_state,
    load_train_state,
    rng_state,
    save_checkpoint,
    seed_rngs,
    set_rng_state,
)


def test_save_prune_latest_and_half_written_dirs(tmp_path):
    """Only complete checkpoints (with meta.json) count; the newest `keep` are kept; a leftover temp dir is ignored."""
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"w": torch.ones(2) * step}, {"step": step}, "a: 1\n", {}, keep=2)
    (tmp_path / "checkpoints" / ".tmp-step_0000009-1").mkdir()
    (tmp_path / "checkpoints" / "step_0000010").mkdir()  # no meta.json: a crash before the rename cannot leave this,
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000002", "step_0000003"]  # but it is ignored anyway
    assert latest_checkpoint(tmp_path).name == "step_0000003"
    assert torch.equal(load_model_state(tmp_path)["w"], torch.full((2,), 3.0))


def test_rng_state_round_trip_through_weights_only(tmp_path):
    """torch, numpy and python RNG states survive a weights_only save/load and restore exactly."""
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_checkpoint(tmp_path, 1, {}, {"rng": rng_state()}, "", {})
    expect = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    st = torch.load(latest_checkpoint(tmp_path) / "train_state.pt", weights_only=True)
    set_rng_state(st["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]


def test_seed_rngs_fixes_every_saved_state():
    """After seed_rngs the whole saved RNG state (torch, numpy, python) is a function of the seed, so two runs
    with one seed save the same train_state; another seed gives other states for each generator."""
    def saved(seed):
        seed_rngs(seed)
        st = rng_state()
        return st["torch"], (st["numpy"]["keys"], st["numpy"]["pos"]), st["python"]

    torch.rand(5), np.random.rand(5), random.random()  # whatever was drawn before does not matter
    a = saved(7)
    torch.rand(5), np.random.rand(5), random.random()
    b, c = saved(7), saved(8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1][0], b[1][0]) and a[1][1] == b[1][1] and a[2] == b[2]
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1][0], c[1][0]) and a[2] != c[2]


def test_load_errors_name_the_path(tmp_path):
    """Missing paths, empty run dirs and pickled modules give errors that say what to do."""
    with pytest.raises(CheckpointError, match="not found"):
        load_model_state(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="neither a checkpoint directory"):
        load_model_state(tmp_path)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole_module.ckpt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_model_state(tmp_path / "whole_module.ckpt")


def test_truncated_or_damaged_train_state_names_the_file(tmp_path):
    """A train_state.pt cut short (a full disk, a copy interrupted) or overwritten with garbage is a CheckpointError
    naming the file, without torch's advice to load with weights_only=False."""
    ck = save_checkpoint(tmp_path, 1, {"w": torch.ones(2)}, {"step": 1, "x": torch.zeros(1000)}, "", {})
    f = ck / "train_state.pt"
    good = f.read_bytes()
    for damaged in (good[: len(good) // 2], b"garbage" * 10, b""):
        f.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=rf"^{f} is truncated or corrupt \(") as err:
            load_train_state(ck)
        assert "weights_only=False" not in str(err.value)
    f.unlink()
    with pytest.raises(CheckpointError, match=rf"^{f} is missing"):
        load_train_state(ck)
