"""Loading released VideoSAUR / SAVi checkpoints and our own (cjepa/models/encoder_checkpoints.py)."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from cjepa.config import load_config
from cjepa.models.dinov2_weights import WeightsError
from cjepa.models.encoder_checkpoints import load_encoder_weights
from cjepa.models.encoder_factory import build_object_encoder
from cjepa.models.savi import coordinate_grid

pytestmark = pytest.mark.filterwarnings("ignore::cjepa.models.dinov2.RandomBackboneWarning")
FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "reference_encoder_keys.json").read_text())


def _fake(entry: str, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) for k, shape in FIXTURE[entry]["keys"]}


def _build(*overrides):
    cfg = load_config([], list(overrides))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_object_encoder(cfg.encoder)


def test_released_videosaur_checkpoint_maps_onto_every_tensor(tmp_path):
    """The original CLEVRER VideoSAUR Lightning state_dict fills every tensor of ours (backbone included), nothing
    left over."""
    sd = _fake("videosaur_clevrer")
    torch.save({"state_dict": sd, "global_step": 100000}, tmp_path / "step=100000.ckpt")
    m = _build()  # the defaults are the CLEVRER config: 7 slots x 128, ViT-S/14 at 196 px
    report = load_encoder_weights(m, tmp_path / "step=100000.ckpt")
    ours = m.state_dict()
    assert report.layout == "videosaur" and report.unexpected == [] and report.missing == []
    assert report.loaded == len(ours)
    pairs = {
        "initializer.log_std": "initializer.log_std",
        "adapter.layers.3.weight": "encoder.module.output_transform.layers.3.weight",
        "grouper.norm_inputs.weight": "processor.module.corrector.norm_features.weight",
        "grouper.gru.weight_hh": "processor.module.corrector.gru.weight_hh",
        "predictor.blocks.0.self_attn.qkv.weight": "processor.module.predictor.blocks.0.self_attn.qkv.weight",
        "decoder.allocator.blocks.2.linear2.bias": "decoder.module.allocator.blocks.2.linear2.bias",
        "decoder.renderer.layers.4.weight": "decoder.module.renderer.layers.4.weight",
        "decoder.output_transform.weight": "decoder.module.output_transform.weight",
        "decoder.pos_emb": "decoder.module.pos_emb",
        "backbone.model.embeddings.position_embeddings": "encoder.module.backbone.embeddings.position_embeddings",
    }
    for ours_key, theirs in pairs.items():
        assert torch.equal(ours[ours_key], sd[theirs]), ours_key
    assert m.backbone.pretrained


def test_released_savi_checkpoint_maps_and_drops_the_unused_prior_head(tmp_path):
    """The original StoSAVi state_dict (nerv, 'module.' prefix) fills every tensor; prior_slot_layer is dropped and
    reported."""
    sd = _fake("savi_clevrer")
    sd["encoder_pos_embedding.grid"] = coordinate_grid(64)
    sd["decoder_pos_embedding.grid"] = coordinate_grid(8)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 8}, tmp_path / "model_8.pth")
    m = _build("encoder.kind=savi")
    report = load_encoder_weights(m, tmp_path / "model_8.pth")
    ours = m.state_dict()
    assert report.layout == "savi" and report.loaded == len(ours) and report.unexpected == []
    assert any("prior_slot_layer" in n for n in report.notes)
    pairs = {
        "cnn.6.weight": "encoder.3.0.weight",
        "decoder.6.weight": "decoder.3.0.weight",
        "decoder.8.bias": "decoder.4.bias",
        "grouper.norm_slots.weight": "slot_attention.project_q.0.weight",
        "grouper.to_q.weight": "slot_attention.project_q.1.weight",
        "grouper.mlp.3.weight": "slot_attention.mlp.3.weight",
        "initializer.slots": "init_latents",
        "kernel_dist.weight": "kernel_dist_layer.0.weight",
        "predictor.mlp.2.bias": "predictor.mlp.2.bias",
        "enc_mlp.3.weight": "encoder_out_layer.3.weight",
        "dec_pos.dense.weight": "decoder_pos_embedding.dense.weight",
    }
    for ours_key, theirs in pairs.items():
        assert torch.equal(ours[ours_key], sd[theirs]), ours_key


def test_size_mismatch_and_wrong_grid_are_errors(tmp_path):
    """A checkpoint for 7 slots does not load into a 5-slot model; a foreign coordinate grid is rejected."""
    sd = _fake("savi_clevrer")
    sd["encoder_pos_embedding.grid"] = coordinate_grid(64)
    sd["decoder_pos_embedding.grid"] = coordinate_grid(8)
    torch.save(sd, tmp_path / "s.pth")
    with pytest.raises(WeightsError, match=r"initializer.slots has shape \(1, 7, 128\)"):
        load_encoder_weights(_build("encoder.kind=savi", "encoder.num_slots=5"), tmp_path / "s.pth")
    sd["encoder_pos_embedding.grid"] = torch.zeros(1, 64, 64, 4)
    torch.save(sd, tmp_path / "s2.pth")
    with pytest.raises(WeightsError, match="coordinate grid"):
        load_encoder_weights(_build("encoder.kind=savi"), tmp_path / "s2.pth")


def test_own_checkpoint_round_trip_through_the_config(tmp_path):
    """Our model.pt (a checkpoint directory) loads back exactly via encoder.checkpoint; foreign keys are errors."""
    small = [
        "encoder.kind=savi",
        "encoder.savi.resolution=32",
        "encoder.savi.enc_channels=8",
        "encoder.savi.dec_channels=8",
        "encoder.slot_dim=16",
        "encoder.num_slots=3",
        "encoder.savi.slot_mlp=16",
    ]
    torch.manual_seed(1)
    a = _build(*small)
    (tmp_path / "ckpt").mkdir()
    torch.save(a.state_dict(), tmp_path / "ckpt" / "model.pt")
    torch.manual_seed(2)
    b = _build(*small, f"encoder.checkpoint={tmp_path / 'ckpt'}")
    assert b.load_report.layout == "cjepa"
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v), k
    torch.save({**a.state_dict(), "grouper.extra": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="grouper.extra"):
        load_encoder_weights(b, tmp_path / "bad.pt")
