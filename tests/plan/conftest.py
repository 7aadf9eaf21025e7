"""Tiny Push-T world models for planning tests (random weights: the tests check plumbing, not skill)."""

import numpy as np
import pytest
import torch

from cjepa.config import ModelConfig
from cjepa.data.pusht import StateSlotEmbedding
from cjepa.data.windows import AuxNormalizer
from cjepa.models.predictor import build_predictor
from cjepa.plan.world_model import SlotWorldModel, StateSlotEncoder

SLOT_DIM = 16


def tiny_model_config(**kw) -> ModelConfig:
    base = dict(kind="pusht", num_slots=4, slot_dim=SLOT_DIM, history_frames=3, pred_frames=1, depth=1, heads=2,
                head_dim=8, mlp_dim=32, dropout=0.0, action_chunk=5)
    base.update(kw)
    return ModelConfig(**base)


def tiny_normalizer() -> AuxNormalizer:
    return AuxNormalizer(
        proprio_mean=np.array([256, 256, 0, 0], np.float32), proprio_std=np.array([100, 100, 50, 50], np.float32),
        action_mean=np.tile(np.array([0.01, -0.02], np.float32), 5),
        action_std=np.tile(np.array([0.5, 0.4], np.float32), 5),
    )


def make_world_model(reorder: bool = True, **model_kw) -> SlotWorldModel:
    torch.manual_seed(0)
    predictor = build_predictor(tiny_model_config(**model_kw)).eval()
    encoder = StateSlotEncoder(StateSlotEmbedding(SLOT_DIM, 2))
    return SlotWorldModel(predictor, encoder, tiny_normalizer(), action_block=5, reorder_slots=reorder)


@pytest.fixture
def world_model() -> SlotWorldModel:
    return make_world_model()
