"""`cjepa pusht`: writes the state-slot store, resumes per episode, and refuses writing nothing."""

from cjepa.cli import main
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
