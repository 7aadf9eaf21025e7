"""`cjepa pusht`: writes the state-slot store, resumes per episode, and refuses writing nothing."""

import numpy as np
import pytest

from cjepa.cli import main
from cjepa.config import ConfigError, load_config
from cjepa.data.pusht import store_action_stats
from cjepa.data.slot_store import SlotSplit


def test_pusht_command_writes_and_resumes(tmp_path, capsys):
    """A second run with the same settings finds every episode stored and writes nothing new."""
    args = ["pusht", "model.slot_dim=8", "model.heads=2", f"data.pusht.out={tmp_path}", "data.pusht.videos=false",
            "data.pusht.expert_train=1", "data.pusht.random_train=2", "data.pusht.expert_val=1",
            "data.pusht.random_steps=10"]
    assert main(args) == 0
    train = SlotSplit(tmp_path / "slots", "train")
    assert sorted(train) == ["expert_000000", "random_000000", "random_000001"]
    assert set(train.extras) == {"action", "proprio", "state"}
    before = {k: train[k].copy() for k in train}
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "already stored" in out
    train = SlotSplit(tmp_path / "slots", "train")
    assert {k: v.tolist() for k, v in before.items()} == {k: train[k].tolist() for k in train}


def test_pusht_command_with_nothing_to_write(tmp_path, capsys):
    assert main(["pusht", f"data.pusht.out={tmp_path}", "data.pusht.videos=false", "data.pusht.state_slots=false"]) == 2
    assert "nothing to write" in capsys.readouterr().err


def test_pusht_command_adds_branch_episodes_after_the_base_ones(tmp_path, capsys):
    """data.pusht.branch_train adds branch episodes to the train split (none by default); "normal" ones draw from
    the statistics of the store's expert + random train actions, which the command prints; a rerun resumes."""
    base = ["pusht", "model.slot_dim=8", "model.heads=2", f"data.pusht.out={tmp_path}", "data.pusht.videos=false",
            "data.pusht.expert_train=2", "data.pusht.random_train=1", "data.pusht.expert_val=1",
            "data.pusht.random_steps=10", "data.pusht.expert_max_steps=40"]
    assert main(base) == 0
    assert sorted(SlotSplit(tmp_path / "slots", "train")) == ["expert_000000", "expert_000001", "random_000000"]
    capsys.readouterr()
    args = base + ["data.pusht.branch_train=3", "data.pusht.branch_steps=6"]
    assert main(args) == 0
    out = capsys.readouterr().out
    train = SlotSplit(tmp_path / "slots", "train")
    branch = sorted(k for k in train if k.startswith("branch_normal_"))
    assert branch == ["branch_normal_000000", "branch_normal_000001", "branch_normal_000002"]
    assert all(len(train[k]) == 7 for k in branch)
    assert sorted(SlotSplit(tmp_path / "slots", "val")) == ["expert_000000"]
    mean, std = store_action_stats(tmp_path / "slots", "train")
    assert f"N(mean {mean.tolist()}, std {std.tolist()})" in out
    starts = {tuple(np.asarray(train.extra(k, "state"))[0]) for k in branch}
    expert_states = {tuple(s) for k in ("expert_000000", "expert_000001") for s in np.asarray(train.extra(k, "state"))}
    assert starts <= expert_states
    assert main(args + ["data.pusht.branch_policy=explore"]) == 0
    assert sum(k.startswith("branch_explore_") for k in SlotSplit(tmp_path / "slots", "train")) == 3


@pytest.mark.parametrize("overrides, fragment", [
    (["data.pusht.branch_train=-1"], "branch_train must be >= 0"),
    (["data.pusht.branch_steps=0"], "branch_steps >= 1"),
    (["data.pusht.branch_train=1", "data.pusht.expert_train=0"], "expert_train must be >= 1"),
    (["data.pusht.branch_train=1", "data.pusht.state_slots=false"], "state_slots must be on"),
])
def test_branch_options_are_checked(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(overrides=overrides)
    load_config(overrides=["data.pusht.branch_train=1", "data.pusht.state_slots=false",
                           "data.pusht.branch_policy=explore"])
