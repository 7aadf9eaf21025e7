"""The one typed configuration of cjepa.

Every default lives in :mod:`cjepa.config.schema`, once, one module per area; each section checks its own values.
YAML files under ``configs/`` hold deltas over these defaults, dotted command-line overrides
(``optim.lr=3e-4 masking.num_masked=2``) come last (:mod:`cjepa.config.loader`), and the fully resolved result is
written into every run directory as ``config.yaml``. :mod:`cjepa.config.validate` runs the checks in a fixed order.
Derived values live beside it: the batch layout (:mod:`cjepa.config.batch`) and the DeepSpeed dict
(:mod:`cjepa.config.deepspeed`).
"""

from cjepa.config.batch import Derived, derive
from cjepa.config.deepspeed import to_deepspeed
from cjepa.config.errors import ConfigError
from cjepa.config.loader import (
    config_from_dict,
    dump_yaml,
    keys_named,
    load_config,
    merge,
    parse_override,
    resolve_config_file,
    to_dict,
)
from cjepa.config.schema import (
    BackboneConfig,
    Config,
    DataConfig,
    DistConfig,
    EncoderConfig,
    ExtractConfig,
    KernelsConfig,
    LaunchConfig,
    MaskingConfig,
    ModelConfig,
    OptimConfig,
    PlanConfig,
    PushTDataConfig,
    RolloutConfig,
    RunConfig,
    SaviConfig,
    StudyConfig,
    SyntheticConfig,
    TrainConfig,
    VideoDataConfig,
    VideoSaurConfig,
    VQAConfig,
    WorldConfig,
    encoder_input_size,
)
from cjepa.config.validate import validate

__all__ = [
    "BackboneConfig", "Config", "ConfigError", "DataConfig", "Derived", "DistConfig", "EncoderConfig", "ExtractConfig",
    "KernelsConfig", "LaunchConfig", "MaskingConfig", "ModelConfig", "OptimConfig", "PlanConfig", "PushTDataConfig",
    "RolloutConfig", "RunConfig", "SaviConfig", "StudyConfig", "SyntheticConfig", "TrainConfig", "VQAConfig",
    "VideoDataConfig", "VideoSaurConfig", "WorldConfig", "config_from_dict", "derive", "dump_yaml",
    "encoder_input_size", "keys_named", "load_config", "merge", "parse_override", "resolve_config_file",
    "to_deepspeed", "to_dict", "validate",
]
