"""`cjepa extract` (cjepa/commands/extract.py)."""

import pickle

import torch

from cjepa.cli import main
from cjepa.config import load_config
from cjepa.data.clips import InMemoryVideos
from cjepa.data.slot_store import SlotSplit
from cjepa.data.video_sources import register_video_source
from cjepa.models.encoder_factory import build_object_encoder
from tests.video_helpers import TINY_SAVI, disc_videos

SMALL = ["run.device=cpu", *TINY_SAVI]


def test_extract_writes_store_and_pickle_and_resumes(tmp_path, capsys):
    """extract encodes every available split with encoder.checkpoint, skips missing splits, and a rerun skips done
    videos."""
    splits = {"train": InMemoryVideos(disc_videos(3, 6, 16, seed=0)),
              "val": InMemoryVideos(disc_videos(2, 6, 16, seed=1))}

    def factory(*, path, split, data_cfg=None, image_size=None):
        if split not in splits:
            raise FileNotFoundError(f"no {split} split")
        return splits[split]

    register_video_source("test_extract_discs", factory)
    cfg = load_config([], SMALL)
    torch.manual_seed(0)
    (tmp_path / "ckpt").mkdir()
    torch.save(build_object_encoder(cfg.encoder).state_dict(), tmp_path / "ckpt" / "model.pt")
    args = [
        "extract",
        "--no-progress",
        *SMALL,
        "encoder.data.source=test_extract_discs",
        f"encoder.checkpoint={tmp_path / 'ckpt'}",
        f"encoder.extract.out={tmp_path / 'store'}",
        f"encoder.extract.export_pickle={tmp_path / 'slots.pkl'}",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "skipped split test" in out and "fg_ari" in out
    assert sorted(SlotSplit(tmp_path / "store", "train")) == splits["train"].keys()
    with open(tmp_path / "slots.pkl", "rb") as fh:
        assert sorted(pickle.load(fh)) == ["train", "val"]
    assert main(args) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line[:5] in ("train",
                                                                                                           "val  ")}
    assert rows["train"][1:4] == ["3", "0", "3"] and rows["val"][1:4] == ["2", "0", "2"]  # videos, written, skipped


def test_extract_needs_a_checkpoint(capsys):
    """Without encoder.checkpoint the command refuses (random encoders make meaningless slots)."""
    assert main(["extract", *SMALL]) == 2
    assert "encoder.checkpoint" in capsys.readouterr().err
