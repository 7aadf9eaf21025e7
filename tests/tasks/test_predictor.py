"""The predictor task's training losses follow the configured masking options."""

from types import SimpleNamespace

import pytest
import torch

from cjepa.config import ConfigError, load_config
from cjepa.losses import predictor_losses
from cjepa.masking import MaskSampler
from cjepa.tasks.predictor import PredictorTask


def _task(*overrides):
    cfg = load_config(overrides=["model.kind=pusht", "model.num_slots=4", "masking.num_masked=0",
                                 "data.synthetic.max_objects=4", *overrides])
    task = PredictorTask(cfg)
    task.env = SimpleNamespace(rank=0, world_size=1)
    task.derived = SimpleNamespace(global_batch=2, micro_batch=2)
    task.device = torch.device("cpu")
    task.masks = MaskSampler.from_config(cfg.masking, cfg.model.num_slots)
    return cfg, task


def test_training_losses_use_masking_future_slot_weights():
    """masking.future_slot_weights reaches the loss of a training step; off (the default) is the plain loss."""
    cfg, task = _task()
    T_h, T = cfg.model.history_frames, cfg.model.history_frames + cfg.model.pred_frames
    g = torch.Generator().manual_seed(0)
    pred, nodes = torch.randn(2, T, 6, 8, generator=g), torch.randn(2, T, 6, 8, generator=g)

    def model(slots, prop, act, masked):
        return pred, nodes

    batch = {"slots": torch.zeros(2, T, 4, 8), "proprio": torch.zeros(2, T, 4), "action": torch.zeros(2, T, 10)}
    masked = torch.zeros(2, 4, dtype=torch.bool)
    plain = predictor_losses(pred, nodes, masked, T_h, cfg.masking.history_loss_includes_t0, num_object_slots=4)
    assert torch.isclose(task.training_losses(model, batch, 0, 0)["loss"], plain["loss"])
    weights = [1.0, 5.0, 1.0, 1.0]
    cfg, task = _task(f"masking.future_slot_weights={weights}")
    weighted = predictor_losses(pred, nodes, masked, T_h, cfg.masking.history_loss_includes_t0, num_object_slots=4,
                                future_slot_weights=weights)
    got = task.training_losses(model, batch, 0, 0)
    assert torch.isclose(got["loss_future"], weighted["loss_future"])
    assert not torch.isclose(got["loss_future"], plain["loss_future"])


@pytest.mark.parametrize("overrides, fragment", [
    (["masking.future_slot_weights=[1, 2]"], "2 weights for model.num_slots=4"),
    (["masking.future_slot_weights=[1, -1, 1, 1]"], "finite weights >= 0"),
    (["masking.future_slot_weights=[0, 0, 0, 0]"], "positive sum"),
    (["masking.future_slot_weights=[1, 2, 1, 1]", "masking.future_loss=relative_to_copy_last"], "future_loss=mse"),
])
def test_future_slot_weights_are_checked(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(overrides=["model.num_slots=4", "masking.num_masked=0", "data.synthetic.max_objects=4", *overrides])
