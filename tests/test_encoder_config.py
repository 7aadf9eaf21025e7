"""The encoder section of the config (cjepa/config/schema/encoder.py) and the shipped encoder configs."""

import pytest

from cjepa.config import ConfigError, load_config
from tests.helpers import REPO


def _load(name, *overrides):
    return load_config([str(REPO / "configs" / name)], list(overrides))


def test_clevrer_videosaur_matches_the_original_config():
    """configs/clevrer/videosaur.yaml = the original CLEVRER VideoSAUR settings (spec 4.1)."""
    c = _load("clevrer/videosaur.yaml")
    e = c.encoder
    assert (e.kind, e.num_slots, e.slot_dim) == ("videosaur", 7, 128)
    assert (e.backbone.image_size, e.backbone.patch_size, e.backbone.dim,
            e.backbone.features) == (196, 14, 384, "post_ln")
    assert (e.videosaur.sim_weight, e.videosaur.sim_temp, e.videosaur.iters_first,
            e.videosaur.iters) == (0.3, 0.15, 3, 2)
    assert (e.data.clip_frames, e.data.frame_stride, e.data.val_clip_frames, e.data.hflip_prob) == (6, 2, 10, 0.5)
    o = c.optim
    assert (o.lr, o.weight_decay, o.schedule, o.warmup_steps, o.min_lr_ratio, o.grad_clip) == (
        1e-4,
        0.0,
        "exp_decay",
        2000,
        0.5,
        0.05,
    )
    assert (c.data.batch_size, c.train.max_steps) == (32, 100000)


def test_pusht_videosaur_and_savi_configs():
    """Push-T VideoSAUR: 4 slots, 0.25/0.25, batch 64, lr 2e-4; CLEVRER SAVi: 64 px, 7 x 128, cosine to lr/100, clip
    0.05."""
    p = _load("pusht/videosaur.yaml")
    assert (p.encoder.num_slots, p.encoder.videosaur.sim_weight, p.encoder.videosaur.sim_temp) == (4, 0.25, 0.25)
    assert (p.data.batch_size, p.optim.lr, p.encoder.data.val_clip_frames, p.encoder.extract.splits) == (
        64,
        2e-4,
        6,
        ("train", "val"),
    )
    s = _load("clevrer/savi.yaml")
    assert (s.encoder.kind, s.encoder.savi.resolution, s.encoder.num_slots, s.encoder.slot_dim) == ("savi", 64, 7, 128)
    assert (s.encoder.savi.kld_weight, s.encoder.savi.iters, s.optim.schedule,
            s.optim.min_lr_ratio) == (1e-4, 2, "cosine", 0.01)
    w = _load("world/savi.yaml")
    assert w.encoder.kind == "savi" and w.encoder.savi.resolution == 32


@pytest.mark.parametrize(
    "override,message",
    [
        ("encoder.savi.resolution=48", "dec_resolution"),
        ("encoder.backbone.image_size=200", "multiple of patch_size"),
        ("encoder.data.clip_frames=1", "time-similarity"),
        ("encoder.videosaur.predictor_heads=3", "not divisible"),
        ("encoder.data.hflip_prob=1.5", "hflip_prob"),
        ("encoder.videosaur.gru_hidden=other", "gru_hidden"),
        ("encoder.backbone.featurs=pre_ln", "did you mean 'encoder.backbone.features'"),
        ("encoder.savi.init=box", "encoder.savi.init"),
        ("encoder.kind=savi encoder.savi.init=cues train.task=pretrain", "cannot run a conditional encoder"),
    ],
)
def test_bad_encoder_settings_are_errors(override, message):
    """Inconsistent encoder settings fail at load time with the key involved."""
    with pytest.raises(ConfigError, match=message):
        load_config([], override.split())


def test_clip_schedule_phases_and_the_two_phase_keys():
    """encoder.data.clip_schedule lists the phases after the clip_frames one; long_clip_frames / long_clips_from
    are its two-phase form."""
    d = _load("world/demo_encoder.yaml", "encoder.data.clip_schedule=[[300, 4], [340, 8], [364, 16]]").encoder.data
    assert d.phases() == ((0, 2), (300, 4), (340, 8), (364, 16))
    d = _load("world/demo_encoder.yaml", "encoder.data.long_clip_frames=8", "encoder.data.long_clips_from=500")
    assert d.encoder.data.phases() == ((0, 2), (500, 8))
    assert _load("world/demo_encoder.yaml").encoder.data.phases() == ((0, 2),)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["encoder.data.clip_schedule=[[300, 4], [300, 8]]"],
         r"clip_schedule\[1\] = \[300, 8\]: from_step must be > 300 \(phase 0 starts at 300\)"),
        (["encoder.data.clip_schedule=[[300, 4], [200, 8]]"],
         r"clip_schedule\[1\] = \[200, 8\]: from_step must be > 300"),
        (["encoder.data.clip_schedule=[[0, 4]]"],
         r"clip_schedule\[0\] = \[0, 4\]: from_step must be > 0 \(the clip_frames"),
        (["encoder.data.clip_schedule=[[10, 0]]"], r"clip_schedule\[0\] = \[10, 0\]: frames must be >= 1"),
        (["encoder.kind=videosaur", "encoder.data.clip_schedule=[[10, 1]]"], r"frames must be >= 2"),
        (["encoder.data.clip_schedule=[[10]]"], r"clip_schedule.*\[0\]: expected 2 items, got 1"),
        (["encoder.data.clip_schedule=[[10, 4]]", "encoder.data.long_clip_frames=8", "encoder.data.long_clips_from=50"],
         r"both set a curriculum.*clip_schedule=\[\[50, 8\]\]"),
    ],
)
def test_bad_clip_schedules_name_the_phase(overrides, message):
    """A schedule that does not grow step by step, a phase too short for the loss, a malformed phase or two
    curricula at once fail at load time naming the phase."""
    with pytest.raises(ConfigError, match=message):
        _load("world/demo_encoder.yaml", *overrides)
