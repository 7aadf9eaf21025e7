"""Original Push-T world-model state_dicts map onto our PushTPredictor: prefix stripped, frozen encoder left out
and reported, Conv1d aux weights made Linear, anything else named."""

import pytest
import torch

from cjepa.models.predictor import PushTPredictor
from cjepa.models.predictor_checkpoints import pusht_state_from_original
from cjepa.utils.state_dict import StateDictMismatch, load_checked

# Frozen pieces as the original's Lightning wrapper names them (EvalOnly(...).backbone inside CausalWM_AP).
FROZEN = {
    "model.encoder.backbone.embeddings.cls_token": torch.zeros(1, 1, 384),
    "model.slot_attention.backbone.corrector.to_q.weight": torch.zeros(8, 8),
    "model.initializer.backbone.mean": torch.zeros(1, 1, 8),
}


def tiny_pusht() -> PushTPredictor:
    torch.manual_seed(0)
    return PushTPredictor(num_slots=2, slot_dim=8, proprio_dim=4, action_dim=2, action_chunk=5, history_frames=2,
                          pred_frames=1, depth=1, heads=2, mlp_dim=16, dropout=0.0, layout="reference")


def original_layout(model: PushTPredictor) -> dict[str, torch.Tensor]:
    """``spt.Module(model=CausalWM_AP(...)).state_dict()`` of the same weights: Conv1d aux weights, frozen encoder."""
    sd = {}
    for k, v in model.state_dict().items():
        sd["model." + k] = v[..., None] if k.endswith("patch_embed.weight") else v  # Conv1d(kernel 1): (D, C, 1)
    return {**sd, **FROZEN}


def test_original_layout_maps_onto_ours():
    m = tiny_pusht()
    state, report = pusht_state_from_original(original_layout(m), "orig.ckpt")
    assert report.layout == "original" and sorted(report.frozen) == sorted(FROZEN)
    assert "left out 3 frozen encoder tensors (encoder, initializer, slot_attention)" in report.summary()
    assert set(state) == set(m.state_dict())
    for k, v in m.state_dict().items():
        assert torch.equal(state[k], v), k
    fresh = PushTPredictor(num_slots=2, slot_dim=8, proprio_dim=4, action_dim=2, action_chunk=5, history_frames=2,
                           pred_frames=1, depth=1, heads=2, mlp_dim=16, dropout=0.0, layout="reference")
    load_checked(fresh, state, "orig.ckpt")  # strict, shapes compared first


def test_our_layout_passes_unchanged_and_callbacks_are_left_out():
    m = tiny_pusht()
    state, report = pusht_state_from_original(m.state_dict(), "ours.pt")
    assert report.layout == "cjepa" and report.frozen == [] and state.keys() == m.state_dict().keys()
    probe = {"callbacks_modules.probe.weight": torch.zeros(3, 8)}
    state, report = pusht_state_from_original({**original_layout(m), **probe}, "orig.ckpt")
    assert report.callbacks == list(probe) and set(state) == set(m.state_dict())


def test_stray_and_encoder_only_files_are_named():
    m = tiny_pusht()
    with pytest.raises(StateDictMismatch, match=r"orig.ckpt .*model\.reward_head\.weight"):
        pusht_state_from_original({**original_layout(m), "model.reward_head.weight": torch.zeros(1)}, "orig.ckpt")
    with pytest.raises(StateDictMismatch, match="only the frozen encoder"):
        pusht_state_from_original(dict(FROZEN), "enc.ckpt")
    with pytest.raises(StateDictMismatch, match="holds no tensors"):
        pusht_state_from_original({}, "empty.ckpt")
