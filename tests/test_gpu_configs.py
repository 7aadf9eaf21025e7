"""configs/gpu/: the one-GPU settings (bf16, compile, TF32, fused kernels) as deltas over the CLEVRER configs."""

import pytest
import yaml

from cjepa.config import ConfigError, config_from_dict, dump_yaml, load_config, to_dict
from tests.helpers import REPO

GPU = REPO / "configs" / "gpu"
# GPU file -> (the config it speeds up, its train.task)
BASES = {"predictor": ("clevrer/predictor.yaml", "predictor"), "videosaur": ("clevrer/videosaur.yaml", "encoder"),
         "pretrain": ("clevrer/predictor.yaml", "pretrain")}
# the only keys a GPU config may change in the config it starts from (pretrain also switches task and decoder)
GPU_KEYS = {"run.name", "run.device", "train.precision", "train.compile", "train.tf32", "kernels.attention",
            "kernels.slot_attention"}
PRETRAIN_KEYS = {"train.task", "encoder.kind", "data.decoder", "data.dali_decode", "data.with_masks"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _resolved(name: str):
    """What a run writes to runs/<name>/config.yaml, loaded back (the resolved config, not the file)."""
    return config_from_dict(yaml.safe_load(dump_yaml(load_config([str(GPU / f"{name}.yaml")]))))


def test_the_gpu_configs_are_the_three_expected():
    assert sorted(p.stem for p in GPU.glob("*.yaml")) == sorted(BASES)


@pytest.mark.parametrize("name", sorted(BASES))
def test_resolved_gpu_config_has_the_gpu_settings(name):
    cfg = _resolved(name)
    assert cfg.train.task == BASES[name][1]
    assert (cfg.train.precision, cfg.train.compile, cfg.train.tf32) == ("bf16", True, True)
    assert cfg.kernels.slot_attention == "triton" and cfg.kernels.attention in ("sdpa", "triton")
    assert cfg.run.device == "cuda"
    if name == "pretrain":
        assert (cfg.data.decoder, cfg.data.dali_decode) == ("dali", "nvdec")
        assert (cfg.encoder.num_slots, cfg.encoder.slot_dim) == (cfg.model.num_slots, cfg.model.slot_dim) == (7, 128)


@pytest.mark.parametrize("name", sorted(BASES))
def test_gpu_config_changes_only_speed_settings(name):
    """Same model, data and optimiser as the config it speeds up: only precision, compile, kernels (and names)
    differ."""
    base = _flat(to_dict(load_config([str(REPO / "configs" / BASES[name][0])])))
    gpu = _flat(to_dict(_resolved(name)))
    changed = {k for k in gpu if gpu[k] != base[k]}
    allowed = GPU_KEYS | (PRETRAIN_KEYS if name == "pretrain" else set())
    assert changed <= allowed, sorted(changed - allowed)
    assert {"train.precision", "train.compile", "train.tf32"} <= changed


def test_a_typo_in_a_gpu_delta_is_an_error(tmp_path):
    """The loader rejects unknown keys in files that build on configs/gpu/ too."""
    f = tmp_path / "mine.yaml"
    f.write_text(f"defaults: [{GPU / 'predictor.yaml'}]\ntrain:\n  tf23: true\n")
    with pytest.raises(ConfigError, match=r"train\.tf23.*did you mean 'train\.tf32'"):
        load_config([str(f)])
