"""The typed schema: one module per area, each section a dataclass that checks its own values; :class:`Config`
gathers the sections. Every default lives here, once."""

from __future__ import annotations

from dataclasses import dataclass, field

from cjepa.config.schema.data import DataConfig, PushTDataConfig, SyntheticConfig, WorldConfig
from cjepa.config.schema.dist import DistConfig
from cjepa.config.schema.encoder import (
    BackboneConfig,
    EncoderConfig,
    ExtractConfig,
    SaviConfig,
    VideoDataConfig,
    VideoSaurConfig,
    encoder_input_size,
)
from cjepa.config.schema.launch import LaunchConfig
from cjepa.config.schema.model import KernelsConfig, MaskingConfig, ModelConfig
from cjepa.config.schema.plan import PlanConfig
from cjepa.config.schema.rollout import RolloutConfig
from cjepa.config.schema.run import RunConfig
from cjepa.config.schema.train import OptimConfig, TrainConfig
from cjepa.config.schema.vqa import StudyConfig, VQAConfig

__all__ = [
    "BackboneConfig", "Config", "DataConfig", "DistConfig", "EncoderConfig", "ExtractConfig", "KernelsConfig",
    "LaunchConfig", "MaskingConfig", "ModelConfig", "OptimConfig", "PlanConfig", "PushTDataConfig", "RolloutConfig",
    "RunConfig", "SaviConfig", "StudyConfig", "SyntheticConfig", "TrainConfig", "VQAConfig", "VideoDataConfig",
    "VideoSaurConfig", "WorldConfig", "encoder_input_size",
]


@dataclass(kw_only=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    kernels: KernelsConfig = field(default_factory=KernelsConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    vqa: VQAConfig = field(default_factory=VQAConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
