"""The encoder factory (cjepa/models/encoder_factory.py): encoder.kind picks the class, the checkpoint is loaded,
and a VideoSAUR whose backbone stayed random says so."""

import warnings

import pytest
import torch

from cjepa.config import load_config
from cjepa.models.dinov2 import RandomBackboneWarning
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.savi import SAVi
from cjepa.models.videosaur import VideoSAUR
from tests.models.test_savi import small as small_savi
from tests.models.test_videosaur import TINY


def test_kind_picks_the_encoder_and_a_savi_builds_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SAVi has no pretrained backbone to warn about
        savi = small_savi()
    assert isinstance(savi, SAVi) and savi.load_report is None
    with pytest.warns(RandomBackboneWarning):
        videosaur = build_object_encoder(load_config([], TINY).encoder)
    assert isinstance(videosaur, VideoSAUR) and videosaur.load_report is None


def test_an_unknown_kind_is_named():
    cfg = load_config([], ["encoder.kind=savi"]).encoder
    cfg.kind = "slotformer"  # past validation, as a caller building its own section could
    with pytest.raises(ValueError, match="unknown encoder.kind 'slotformer'"):
        build_object_encoder(cfg)


def test_the_checkpoint_is_loaded_and_reported(tmp_path):
    source = small_savi()
    with torch.no_grad():  # different from what the same seed builds, so equality below proves the load
        for p in source.parameters():
            p.add_(1.0)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    loaded = small_savi(f"encoder.checkpoint={tmp_path / 'model.pt'}")
    assert loaded.load_report is not None
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
