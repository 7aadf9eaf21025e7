"""Original Push-T world-model state_dicts map onto our PushTPredictor: prefix stripped, frozen encoder left out
and reported, Conv1d aux weights made Linear, anything else named."""

import pytest
import torch

from cjepa.config import ConfigError, ModelConfig, dump_yaml, load_config
from cjepa.models.predictor import PushTPredictor, build_predictor
from cjepa.models.predictor_checkpoints import predictor_from_checkpoint, pusht_state_from_original
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


# ---------------------------------------------------------------------------------------------
# predictor_from_checkpoint

TINY_SLOTS = ["model.num_slots=3", "model.slot_dim=8", "model.heads=2", "model.depth=1", "model.mlp_dim=16",
              "model.history_frames=2", "model.pred_frames=1", "masking.num_masked=1", "data.synthetic.max_objects=3"]


def _checkpoint_dir(tmp_path, overrides):
    """A checkpoint directory of ours: model.pt and the run's resolved config.yaml beside it."""
    cfg = load_config(overrides=overrides)
    torch.manual_seed(1)
    model = build_predictor(cfg.model)
    ckpt = tmp_path / "step_0000001"
    ckpt.mkdir()
    torch.save(model.state_dict(), ckpt / "model.pt")
    (ckpt / "config.yaml").write_text(dump_yaml(cfg))
    return ckpt, model


def test_a_checkpoint_directory_is_built_from_its_saved_model_section(tmp_path):
    """The saved model section wins over the caller's, which stays untouched; the weights are the saved ones."""
    ckpt, saved_model = _checkpoint_dir(tmp_path, [*TINY_SLOTS, "model.depth=2"])
    caller = load_config(overrides=TINY_SLOTS).model
    loaded = predictor_from_checkpoint(ckpt, caller, "torch", "cpu")
    assert (loaded.model_cfg.depth, caller.depth) == (2, 1) and loaded.saved_config == str(ckpt / "config.yaml")
    assert not loaded.model.training and loaded.pusht_report is None
    for k, v in saved_model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k


def test_a_plain_state_dict_is_built_from_the_callers_section_and_a_misfit_is_named(tmp_path):
    ckpt, saved_model = _checkpoint_dir(tmp_path, TINY_SLOTS)
    plain = tmp_path / "plain.pt"
    torch.save(saved_model.state_dict(), plain)
    loaded = predictor_from_checkpoint(plain, load_config(overrides=TINY_SLOTS).model, "torch", "cpu")
    assert loaded.saved_config is None and loaded.model_cfg.depth == 1
    with pytest.raises(
        StateDictMismatch,
        match=r"plain.pt \(rollout.checkpoint\) does not fit the model "
        r"\(the config's model section: layout=cjepa, num_slots=3, slot_dim=8, depth=2\)",
    ):
        predictor_from_checkpoint(plain, load_config(overrides=[*TINY_SLOTS, "model.depth=2"]).model, "torch", "cpu",
                                  label=" (rollout.checkpoint)")


def test_the_callers_check_sees_the_section_and_where_it_came_from_before_anything_loads(tmp_path):
    seen = []

    def refuse(mcfg, where):
        seen.append((mcfg.depth, where))
        raise ConfigError(f"{where}: not this one")

    ckpt, _ = _checkpoint_dir(tmp_path, [*TINY_SLOTS, "model.depth=2"])
    (tmp_path / "broken.pt").write_bytes(b"not a state_dict")  # never read: the check refuses first
    with pytest.raises(ConfigError, match="not this one"):
        predictor_from_checkpoint(ckpt, ModelConfig(), "torch", "cpu", check=refuse)
    with pytest.raises(ConfigError, match="not this one"):
        predictor_from_checkpoint(tmp_path / "broken.pt", ModelConfig(), "torch", "cpu", check=refuse)
    assert seen == [(2, str(ckpt)), (6, f"{tmp_path / 'broken.pt'} (a plain state_dict, built from the config)")]


def test_an_original_pusht_file_is_converted_and_reported(tmp_path):
    m = tiny_pusht()
    torch.save(original_layout(m), tmp_path / "orig.ckpt")
    cfg = ModelConfig(kind="pusht", num_slots=2, slot_dim=8, proprio_dim=4, action_dim=2, action_chunk=5,
                      history_frames=2, pred_frames=1, depth=1, heads=2, mlp_dim=16, dropout=0.0, layout="reference")
    cfg.validate()
    loaded = predictor_from_checkpoint(tmp_path / "orig.ckpt", cfg, "torch", "cpu")
    assert loaded.pusht_report.layout == "original" and sorted(loaded.pusht_report.frozen) == sorted(FROZEN)
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    cfg.layout = "cjepa"
    with pytest.raises(StateDictMismatch, match="with model.layout=reference for the original's files"):
        predictor_from_checkpoint(tmp_path / "orig.ckpt", cfg, "torch", "cpu")
