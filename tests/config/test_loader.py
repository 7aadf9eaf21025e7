"""merge: the one way to write a nested mapping into a config section, as commands do with a saved run's model."""

import pytest

from cjepa.config import Config, ConfigError, merge


def test_merge_writes_a_section_with_its_types_checked():
    cfg = Config()
    merge(cfg.model, {"depth": 3, "dropout": 0}, "model.", "saved/config.yaml")
    assert (cfg.model.depth, cfg.model.dropout) == (3, 0.0) and isinstance(cfg.model.dropout, float)
    merge(cfg, {"encoder": {"backbone": {"image_size": 224}}}, "", "override")
    assert cfg.encoder.backbone.image_size == 224


def test_merge_errors_name_the_dotted_key_and_the_source():
    cfg = Config()
    with pytest.raises(ConfigError,
                       match=r"unknown config key 'model.dpth' \(in saved.yaml\); did you mean 'model.depth'"):
        merge(cfg.model, {"dpth": 3}, "model.", "saved.yaml")
    with pytest.raises(ConfigError, match=r"^model.depth \(in saved.yaml\): expected an integer, got 'x'"):
        merge(cfg.model, {"depth": "x"}, "model.", "saved.yaml")
    with pytest.raises(ConfigError, match="encoder.backbone .*is a section"):
        merge(cfg, {"encoder": {"backbone": 3}}, "", "f.yaml")
