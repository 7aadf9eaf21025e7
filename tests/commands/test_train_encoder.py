"""`cjepa train-encoder` (cjepa/commands/train_encoder.py)."""

import pytest

from cjepa.cli import main
from cjepa.data.clips import InMemoryVideos
from cjepa.data.video_sources import register_video_source
from tests.video_helpers import TINY_SAVI, disc_videos

SMALL = [
    "run.device=cpu",
    *TINY_SAVI,
    "encoder.data.clip_frames=2",
    "encoder.data.val_clip_frames=2",
    "encoder.data.val_videos=2",
    "data.batch_size=2",
    "train.epochs=0",
    "train.max_steps=2",
    "train.val_every=2",
    "train.ckpt_every=2",
]


@pytest.fixture(scope="module")
def disc_source():
    """Register a 'test_discs' video source (rendered billiards) for the config to name."""
    splits = {"train": InMemoryVideos(disc_videos(4, 8, 16, seed=0)),
              "val": InMemoryVideos(disc_videos(2, 8, 16, seed=1))}
    register_video_source("test_discs", lambda *, path, split, data_cfg=None, image_size=None: splits[split])
    return splits


def test_train_encoder_runs_from_a_registered_source(tmp_path, capsys, disc_source):
    """The command trains on the configured source, checkpoints, and prints a summary with the final FG-ARI."""
    rc = main(
        ["train-encoder", "--no-progress", *SMALL, "encoder.data.source=test_discs", f"run.out_dir={tmp_path}",
         "run.name=enc"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "final/fg_ari" in out and "val/loss" in out
    assert (tmp_path / "enc" / "checkpoints" / "step_0000002" / "model.pt").is_file()


def test_unavailable_source_is_a_clear_error(tmp_path, capsys):
    """With the default source (shards) but no path, the command exits 2 and names the key to set."""
    rc = main(["train-encoder", "--no-progress", *SMALL, f"run.out_dir={tmp_path}", "encoder.data.source=shards",
               "encoder.data.path="])
    assert rc == 2
    assert "needs encoder.data.path" in capsys.readouterr().err
