"""The checks of a whole configuration run in one fixed order: with several mistakes, the first one reported is
always the same, whichever sections hold them."""

import pytest

from cjepa.config import ConfigError, load_config

# One mistake per rule, in the order validate() checks them; each override breaks its own rule and no other.
ORDERED_MISTAKES = [
    (["model.depth=0"], "model.slot_dim, model.heads and model.depth must be positive"),
    (["masking.num_masked_max=9"], "masking: cannot mask 9 of model.num_slots=7 slots"),
    (["data.synthetic.max_objects=8"], "data.synthetic.max_objects=8 exceeds model.num_slots=7"),
    (["data.image_size=[0, 4]"], "data.image_size=[0, 4] must be positive (h, w)"),
    (["world.height=15"], "world.height x world.width = 15x480: both must be even"),
    (["train.grad_accum=0"], "train.grad_accum must be >= 1"),
    (["optim.grad_clip=-1"], "optim.grad_clip must be >= 0"),
    (["optim.lr=0"], "optim.lr=0.0 must be a finite number > 0"),
    (["train.epochs=-1"], "train.epochs=-1 must be >= 0"),
    (["dist.zero_stage=5"], "dist.zero_stage=5: choose 0, 1, 2 or 3"),
    (["launch.nodes=0"], "launch.nodes and launch.tasks_per_node must be >= 1"),
    (["rollout.target_frames=1"], "rollout.target_frames must be >= rollout.obs_frames"),
    (["data.pusht.render_size=4"], "data.pusht.render_size must be >= 8"),
    (["plan.topk=1"], "plan.topk must be >= 2"),
    (["plan.agent_weight=-0.5"], "plan.agent_weight=-0.5 must be >= 0"),
    (["plan.oracle_agent_weight_placed=-1"], "plan.oracle_agent_weight_placed=-1.0 must be >= 0"),
    (["plan.oracle_final_weight=-0.01"], "plan.oracle_final_weight=-0.01 must be >= 0"),
    (["plan.encoder=pixels"], "plan.encoder=pixels needs plan.encoder_checkpoint"),
    (["encoder.num_slots=0"], "encoder.num_slots and encoder.slot_dim must be >= 1"),
    (["encoder.backbone.patch_size=15"], "encoder.backbone.image_size=196 must be a multiple of patch_size=15"),
    (["encoder.videosaur.predictor_heads=3"],
     "encoder.slot_dim=128 is not divisible by encoder.videosaur.predictor_heads=3"),
    (["encoder.savi.resolution=48"], "encoder.savi.resolution=48 must be dec_resolution=8 times 2**k"),
    (["encoder.data.hflip_prob=2"], "encoder.data.hflip_prob must be in [0, 1]"),
    (["encoder.extract.batch_videos=0"], "encoder.extract.frame_stride and batch_videos must be >= 1"),
    (["train.task=pretrain", "encoder.kind=savi", "encoder.savi.init=cues"], "cannot run a conditional encoder"),
    (["vqa.eval_every_epochs=0"], "vqa.eval_every_epochs must be >= 1"),
    (["study.protocols=[oracle]"], "study.protocols ['oracle']: choose from"),
]


def _first_error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    return str(err.value)


def test_the_first_error_follows_the_fixed_order_of_the_checks():
    """All mistakes at once report the first rule's; dropping the mistakes one by one from the front walks the
    rules in order, every section's own checks and the rules across sections alike."""
    for i, (_, fragment) in enumerate(ORDERED_MISTAKES):
        overrides = [ov for group, _ in ORDERED_MISTAKES[i:] for ov in group]
        assert fragment in _first_error(overrides), f"mistake {i}: {overrides[0]}"
    load_config()


def test_each_mistake_alone_is_reported():
    """Every rule of the list fires on its own mistake, so the ordered walk above tests the order and not chance."""
    for group, fragment in ORDERED_MISTAKES:
        assert fragment in _first_error(group)


def test_checks_that_need_another_section_read_the_value_it_holds():
    """masking and data.synthetic are checked against model.num_slots as configured, not against a default."""
    assert "of model.num_slots=3 slots" in _first_error(["model.num_slots=3", "masking.num_masked=4"])
    assert "exceeds model.num_slots=5" in _first_error(["model.num_slots=5", "data.synthetic.max_objects=6"])
    load_config(overrides=["model.num_slots=9", "masking.num_masked_max=9", "data.synthetic.max_objects=9"])


@pytest.mark.parametrize("overrides, message", [
    (["plan.agent_weight=0.25"], "a pixel encoder's slot 0 is not the agent"),
    (["plan.oracle=true"], "plan.oracle embeds simulator states"),
])
def test_pixel_planning_refuses_state_slot_only_options(overrides, message):
    """The agent weight names the state-slot encoder's slot 0 and the oracle embeds states: neither means anything
    through a pixel encoder."""
    assert message in _first_error(["plan.encoder=pixels", "plan.encoder_checkpoint=runs/enc", *overrides])

