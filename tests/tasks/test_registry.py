"""The task registry: every name ``train.task`` accepts builds a task that declares the whole :class:`Task`
contract, and a name outside it is one clear error."""

import typing

import pytest

from cjepa.config import ConfigError, TrainConfig, load_config
from cjepa.tasks.base import Task
from cjepa.tasks.predictor import PredictorTask
from cjepa.tasks.registry import TASKS, build_task, task_class
from tests.helpers import SMOKE, missing_members, protocol_members


def test_the_contract_names_what_the_trainer_calls():
    assert protocol_members(Task) == [
        "after_step", "build_model", "close", "describe", "final_eval", "load_state_dict", "name", "param_groups",
        "setup", "state_dict", "steps_per_epoch", "train_batches", "training_losses", "validate",
    ]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_registered_task_declares_the_whole_contract(name):
    cls = task_class(name)
    assert missing_members(cls, Task) == []
    assert cls.name == name  # what the trainer logs is what the config named


def test_the_registry_holds_exactly_the_names_the_config_accepts():
    accepted = typing.get_args(typing.get_type_hints(TrainConfig)["task"])
    assert sorted(TASKS) == sorted(accepted)


def test_an_unknown_task_name_is_one_clear_error():
    with pytest.raises(ConfigError,
                       match=r"train.task='planner' is not a task; choose one of predictor, pretrain, encoder, vqa"):
        task_class("planner")


def test_build_task_builds_the_named_task(tmp_path):
    task = build_task(load_config([SMOKE], [f"run.out_dir={tmp_path}"]))
    assert isinstance(task, PredictorTask)
