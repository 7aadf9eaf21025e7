"""Which engine dist.engine gives for the world it runs in (cjepa/distributed/engine_factory.py)."""

import pytest
import torch

from cjepa.config import load_config
from cjepa.distributed.engine import LocalEngine
from cjepa.distributed.engine_factory import build_engine
from cjepa.distributed.env import DistEnv
from tests.helpers import SMOKE


def _build(tmp_path, engine: str, env: DistEnv):
    cfg = load_config([SMOKE], [f"run.out_dir={tmp_path}", f"dist.engine={engine}"])
    model = torch.nn.Linear(4, 3)
    return build_engine(model, [{"params": list(model.parameters())}], cfg, env, torch.device("cpu"), total_steps=10)


@pytest.mark.parametrize("engine", ["auto", "single", "ddp"])
def test_one_process_runs_the_single_engine(tmp_path, engine):
    """auto and ddp in a one-process world are a single run: nothing to reduce, no process group needed."""
    built = _build(tmp_path, engine, DistEnv())
    assert isinstance(built, LocalEngine) and built.name == "single"


def test_single_in_a_multi_process_world_is_refused(tmp_path):
    with pytest.raises(RuntimeError, match="dist.engine=single but the job has 2 processes"):
        _build(tmp_path, "single", DistEnv(world_size=2))
