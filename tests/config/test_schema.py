"""Each section of the schema checks its own values, standing alone: what it needs from another section is passed
in, so a section can be validated (and reused) without a whole Config."""

import re

import pytest

from cjepa.config import (
    ConfigError,
    DataConfig,
    DistConfig,
    EncoderConfig,
    LaunchConfig,
    MaskingConfig,
    ModelConfig,
    PlanConfig,
    PushTDataConfig,
    RolloutConfig,
    SaviConfig,
    StudyConfig,
    TrainConfig,
    VideoDataConfig,
    VideoSaurConfig,
    VQAConfig,
    WorldConfig,
)


@pytest.mark.parametrize(
    "section, args, fragment",
    [
        (ModelConfig(heads=5), (), "model.slot_dim=128 is not divisible by model.heads=5"),
        (ModelConfig(layout="reference", residual=True), (), "model.residual=true is an option of the cjepa layout"),
        (ModelConfig(layout="reference", query_last=True), (),
         "model.query_last=true is an option of the cjepa layout"),
        (ModelConfig(layout="reference", width=256), (), "model.width=256 is an option of the cjepa layout"),
        (ModelConfig(width=0), (), "model.width=0 must be positive"),
        (ModelConfig(width=100, heads=16), (), "model.width=100 is not divisible by model.heads=16"),
        (MaskingConfig(num_masked=3), (2,), "cannot mask 3 of model.num_slots=2 slots"),
        (MaskingConfig(mode="fixed", num_masked_max=3), (7,), "masking.mode=fixed reproduces a fixed set"),
        (DataConfig(frameskip=0), (7,), "data.frameskip and data.batch_size must be >= 1"),
        (WorldConfig(min_objects=5, max_objects=4), (), "world.min_objects=5, world.max_objects=4"),
        (PushTDataConfig(background_slots=-1), (), "data.pusht episode counts"),
        (TrainConfig(log_every=0), (), "train.log_every must be >= 1"),
        (DistConfig(offload_params=True), (), "dist.offload_params needs dist.zero_stage=3 (got 2)"),
        (LaunchConfig(signal_delay_s=60, timeout_min=1), (), "launch.signal_delay_s=60 must be shorter"),
        (RolloutConfig(eval_chains=-1), (), "rollout.eval_videos (32) and rollout.eval_chains (-1)"),
        (PlanConfig(receding_horizon=6), (), "plan.receding_horizon=6 must be in 1..plan.horizon=5"),
        (PlanConfig(ensemble=["m2"], encoder="pixels", encoder_checkpoint="enc"), (),
         "plan.ensemble plans with several state-slot models"),
        (VideoSaurConfig(decoder_heads=3), (128,), "encoder.videosaur.decoder_heads=3"),
        (SaviConfig(resolution=256), (), "encoder.savi.resolution=256"),
        (VideoDataConfig(val_clip_frames=1), (True,), "the VideoSAUR time-similarity loss needs clips"),
        (EncoderConfig(slot_dim=0), (), "encoder.num_slots and encoder.slot_dim must be >= 1"),
        (VQAConfig(eval_offsets=[99]), (), "vqa.eval_offsets [99] out of range"),
        (StudyConfig(grid=["run.seed="]), (), "study.grid entry 'run.seed='"),
    ],
)
def test_a_section_reports_its_own_mistake(section, args, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        section.validate(*args)


def test_default_sections_are_valid_and_the_model_fills_in_its_head_dim():
    model = ModelConfig(slot_dim=96, heads=4)
    model.validate()
    assert model.head_dim == 24
    EncoderConfig().validate()
    VideoDataConfig(clip_frames=1, val_clip_frames=1).validate(needs_pairs=False)
    MaskingConfig(num_masked=4).validate(num_slots=4)


def test_the_encoder_checks_its_subsections():
    """EncoderConfig.validate reaches the backbone, VideoSAUR, SAVi, clip and extraction settings it holds."""
    enc = EncoderConfig()
    enc.extract.frame_stride = 0
    with pytest.raises(ConfigError, match="encoder.extract.frame_stride"):
        enc.validate()
    enc = EncoderConfig(kind="savi")
    enc.data.clip_frames = 1  # a single-frame clip is fine without VideoSAUR's time-similarity loss
    enc.validate()
