"""The tasks ``train.task`` can name: name -> the task's class, imported when asked for (a task pulls in its
models and data code, which the other tasks' runs do not need)."""

from __future__ import annotations

from typing import Callable

from cjepa.config import Config, ConfigError
from cjepa.tasks.base import Task


def _predictor() -> type[Task]:
    from cjepa.tasks.predictor import PredictorTask  # start-up time: imported when asked for

    return PredictorTask


def _pretrain() -> type[Task]:
    from cjepa.tasks.pretrain import PretrainTask  # start-up time: imported when asked for

    return PretrainTask


def _encoder() -> type[Task]:
    from cjepa.tasks.encoder import EncoderTask  # start-up time: imported when asked for

    return EncoderTask


def _vqa() -> type[Task]:
    from cjepa.tasks.vqa import VQATask  # start-up time: imported when asked for

    return VQATask


TASKS: dict[str, Callable[[], type[Task]]] = {
    "predictor": _predictor,  # the C-JEPA predictor on slot data
    "pretrain": _pretrain,  # the predictor on raw video through a frozen encoder
    "encoder": _encoder,  # the object-centric encoders (VideoSAUR, SAVi)
    "vqa": _vqa,  # the ALOE reasoner on slot videos
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ConfigError(f"train.task={name!r} is not a task; choose one of {', '.join(TASKS)}")
    return TASKS[name]()


def build_task(cfg: Config) -> Task:
    """The task ``train.task`` names, built from ``cfg``."""
    return task_class(cfg.train.task)(cfg)
