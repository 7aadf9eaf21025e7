"""Contracts of the typed config: deltas over defaults, dotted overrides, errors that name the key."""

import re

import pytest

from cjepa.config import Config, ConfigError, config_from_dict, derive, dump_yaml, load_config, parse_override
from tests.helpers import REPO


def test_defaults_are_the_original_clevrer_predictor():
    """The schema's defaults describe the CLEVRER predictor of the spec (depth 6, 16 heads, MLP 2048, lr 5e-4)."""
    cfg = load_config()
    assert (cfg.model.depth, cfg.model.heads, cfg.model.mlp_dim, cfg.model.slot_dim) == (6, 16, 2048, 128)
    assert cfg.model.head_dim == 8  # derived: D / heads, what the original computes (Q3)
    assert cfg.optim.lr == 5e-4 and cfg.optim.schedule == "constant"


def test_unknown_key_names_key_source_and_suggestion(tmp_path):
    """A typo in a YAML file is an error naming the dotted key, the file, a suggestion and the valid keys."""
    f = tmp_path / "bad.yaml"
    f.write_text("masking:\n  num_mask: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config([str(f)])
    msg = str(err.value)
    assert (
        "masking.num_mask" in msg
        and str(f) in msg
        and "masking.num_masked" in msg
        and "history_loss_includes_t0" in msg
    )


def test_unknown_section_and_override_errors():
    """Unknown sections and overrides fail the same way."""
    with pytest.raises(ConfigError, match="unknown config key 'modle'"):
        load_config(overrides=["modle.depth=3"])
    with pytest.raises(ConfigError, match="override 'optim.lr'"):
        load_config(overrides=["optim.lr"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.depth=two", "expected an integer"),
        ("model.depth=2.5", "expected an integer"),
        ("train.precision=fp16", "choose one of 'fp32', 'bf16'"),
        ("optim.betas=[0.9]", "expected 2 items"),
        ("masking.history_loss_includes_t0=maybe", "expected true/false"),
        ("model=3", "is a section"),
    ],
)
def test_type_errors(override, fragment):
    """Values are checked against the schema's types and choices."""
    with pytest.raises(ConfigError, match=fragment):
        load_config(overrides=[override])


def test_override_parsing_and_coercion():
    """Dotted overrides are YAML values; ints are accepted where floats are expected; lists become tuples."""
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}
    cfg = load_config(overrides=["optim.lr=1", "optim.betas=[0.8, 0.9]", "model.head_dim=null", "run.name=x=y"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.run.name == "x=y"


def test_yaml_defaults_chain_and_override_order(tmp_path):
    """A file's `defaults:` load first, then the file, then CLI overrides."""
    (tmp_path / "base.yaml").write_text("model:\n  depth: 3\n  heads: 4\n")
    (tmp_path / "exp.yaml").write_text("defaults: [base.yaml]\nmodel:\n  depth: 5\n")
    cfg = load_config([str(tmp_path / "exp.yaml")], ["model.heads=2"])
    assert (cfg.model.depth, cfg.model.heads) == (5, 2)


def test_cross_field_validation():
    """Rules spanning keys fail with the keys involved."""
    with pytest.raises(ConfigError, match="model.slot_dim=130 is not divisible by model.heads=16"):
        load_config(overrides=["model.slot_dim=130"])
    with pytest.raises(ConfigError, match="layout=reference needs"):
        load_config(overrides=["model.layout=reference", "model.head_dim=64"])
    with pytest.raises(ConfigError, match="model.residual=true is an option of the cjepa layout"):
        load_config(overrides=["model.layout=reference", "model.residual=true"])
    with pytest.raises(ConfigError, match="encoder.data.long_clip_frames and long_clips_from must be >= 0"):
        load_config(overrides=["encoder.data.long_clip_frames=-1"])
    with pytest.raises(ConfigError, match="cannot mask 8"):
        load_config(overrides=["masking.num_masked=8"])
    with pytest.raises(ConfigError, match="divisible by train.grad_accum"):
        derive(load_config(overrides=["data.batch_size=10", "train.grad_accum=3"]), world_size=1)


def test_resolved_config_round_trips():
    """The config.yaml written into a run directory loads back to the same config."""
    import yaml

    cfg = load_config([str(REPO / "configs/clevrer/reference.yaml")], ["optim.lr=1e-3"])
    again = config_from_dict(yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg


def test_every_shipped_config_loads():
    """Each YAML under configs/ is valid against the schema (no stale keys)."""
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        assert isinstance(load_config([str(path)]), Config), path


def test_derived_batch_split():
    """global batch = micro * accum * world."""
    d = derive(load_config(overrides=["data.batch_size=64", "train.grad_accum=2"]), world_size=2)
    assert (d.micro_batch, d.grad_accum, d.global_batch) == (16, 2, 64)


def test_vqa_and_study_sections_are_checked():
    """VQA evaluation offsets must fit the frame window; study grid entries must be key=v1,v2."""
    with pytest.raises(ConfigError, match=r"vqa.eval_offsets \[8\] out of range: valid start offsets are 0..7"):
        load_config(overrides=["vqa.eval_offsets=[0,8]"])
    with pytest.raises(ConfigError, match="vqa.cf_frames=100 must cover vqa.video_len=128"):
        load_config(overrides=["vqa.cf_frames=100"])
    with pytest.raises(ConfigError, match="study.grid entry 'run.seed'"):
        load_config(overrides=['study.grid=["run.seed"]'])
    cfg = load_config(overrides=["vqa.eval_offsets=[0,7]"])
    assert (
        cfg.vqa.eval_offsets == [0, 7]
        and cfg.vqa.num_frames == 25
        and cfg.study.protocols == ["original", "counterfactual_rollout"]
    )


@pytest.mark.parametrize("override", ["optim.lr=0", "optim.lr=-1e-3", "optim.lr=.nan", "optim.lr=.inf", "vqa.lr=0",
                                      "optim.proprio_lr=-1", "optim.action_lr=.nan"])
def test_learning_rates_must_be_finite_and_positive(override):
    """A zero, negative or non-finite rate trains nothing (or NaN) without failing; it is refused, key named."""
    with pytest.raises(ConfigError, match=re.escape(override.split("=")[0]) + ".*finite number > 0"):
        load_config([], [override])


@pytest.mark.parametrize("key", ["train.epochs", "train.max_steps", "train.val_every", "train.ckpt_every",
                                 "train.keep_checkpoints", "optim.warmup_steps", "vqa.epochs", "vqa.max_steps"])
def test_step_counts_must_not_be_negative(key):
    with pytest.raises(ConfigError, match=re.escape(f"{key}=-1 must be >= 0")):
        load_config([], [f"{key}=-1"])
    load_config([], [f"{key}=0"])  # 0 keeps its meaning (epochs / once per epoch / keep all)


def test_shipped_configs_resolve_from_any_directory(tmp_path, monkeypatch):
    """-c configs/<area>/<file> (or <area>/<file>) finds the repository's file from another working directory; a
    file that exists where the user is still wins."""
    monkeypatch.chdir(tmp_path)
    ref = load_config([str(REPO / "configs" / "smoke" / "cpu.yaml")])
    assert load_config(["configs/smoke/cpu.yaml"]) == ref == load_config(["smoke/cpu.yaml"])
    (tmp_path / "configs" / "smoke").mkdir(parents=True)
    (tmp_path / "configs" / "smoke" / "cpu.yaml").write_text("optim: {lr: 0.125}\n")
    assert load_config(["configs/smoke/cpu.yaml"]).optim.lr == 0.125
    with pytest.raises(ConfigError, match="config file not found.*nope.yaml"):
        load_config(["configs/smoke/nope.yaml"])


def test_human_pace_config_is_the_state_slot_recipe_with_the_slowed_expert():
    """configs/pusht/human_pace.yaml makes the data the oracle's 143/150 record was measured on (state_slots.yaml with
    data.pusht.expert_max_step=30 into its own folder) and plans the oracle with that record's cost."""
    base = load_config([str(REPO / "configs/pusht/state_slots.yaml")],
                       ["data.pusht.out=data/pusht_pace30", "data.pusht.expert_max_step=30"])
    pace = load_config([str(REPO / "configs/pusht/human_pace.yaml")])
    assert pace.data.pusht == base.data.pusht
    assert pace.model == base.model and pace.masking == base.masking and pace.optim == base.optim
    assert pace.data.path == pace.plan.dataset == "data/pusht_pace30/slots"
    assert (pace.plan.oracle_cost, pace.plan.oracle_agent_weight, pace.plan.oracle_success_first) == (
        "state_path", 0.1, True)
    assert pace.plan.num_samples == base.plan.num_samples and pace.plan.budget == base.plan.budget


def test_wide_config_is_the_measured_256_wide_unmasked_model():
    """configs/pusht/wide.yaml trains what planner REPORT section 7 measured (state_slots.yaml with a 256-wide
    4-layer predictor, no masking, the block's loss 4x, on a store with branch episodes) and plans with it."""
    base = load_config([str(REPO / "configs/pusht/state_slots.yaml")])
    wide = load_config([str(REPO / "configs/pusht/wide.yaml")])
    assert (wide.model.width, wide.model.depth, wide.model.mlp_dim, wide.model.slot_dim) == (256, 4, 1024, 64)
    assert wide.model.head_dim == 64  # width // heads
    assert wide.masking.num_masked == 0 and wide.masking.future_slot_weights == [1, 4, 1, 1]
    assert wide.data.path == wide.plan.dataset == "data/pusht_branch/slots"
    assert wide.optim == base.optim and wide.train.max_steps == base.train.max_steps
    assert wide.train.precision == wide.plan.precision == "auto"
    assert (wide.plan.num_samples, wide.plan.iterations, wide.plan.budget) == (300, 30, 50)
