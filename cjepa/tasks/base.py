"""The task contract: what the generic trainer (cjepa.trainer) calls on whatever it trains.

A task owns its data, model, per-step losses, evaluation and task state; the trainer owns the loop, engines,
logging and checkpoints. :class:`Task` declares every call the trainer makes, none optional, so the trainer
never asks a task what it can do. :class:`TaskBase` holds what most tasks share: the no-op hooks, one parameter
group, the micro-batch offset of a rank, grouping micro-batches into optimizer steps, the validation mean over
ranks, and stopping the training loader's workers when the trainer is done.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

import torch
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from cjepa.config import Derived
from cjepa.distributed.env import DistEnv, all_reduce_sum


@runtime_checkable
class Task(Protocol):
    """What the trainer calls, in this order: ``setup``, ``build_model``, ``param_groups``, then per step
    ``train_batches`` / ``training_losses`` / ``after_step``, periodically ``validate``, ``state_dict`` (checkpoints)
    and at the end ``final_eval``; ``load_state_dict`` on resume; ``close`` on every exit of the run."""

    name: str

    def setup(self, env: DistEnv, derived: Derived, device: torch.device) -> None: ...

    @property
    def steps_per_epoch(self) -> int: ...

    def describe(self) -> dict:
        """Facts about the data and model for the run's first log line."""

    def build_model(self) -> torch.nn.Module: ...

    def param_groups(self, model: torch.nn.Module) -> list[dict]: ...

    def train_batches(self, start_step: int) -> Iterator[list[dict]]:
        """From ``start_step`` on: one list of ``grad_accum`` micro-batches per optimizer step."""

    def training_losses(self, model: torch.nn.Module, batch: dict, step: int,
                        micro_index: int) -> dict[str, torch.Tensor]:
        """The losses of one micro-batch; ``"loss"`` is the one back-propagated."""

    def after_step(self) -> None:
        """After each optimizer step."""

    def validate(self, module: torch.nn.Module) -> dict[str, float]: ...

    def final_eval(self, module: torch.nn.Module) -> dict[str, Any]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, sd: dict) -> None: ...

    def close(self) -> None:
        """Release the training data (loader workers, DALI pipelines); the run is over, whichever way it ended."""


def _stop_workers(it: Iterator) -> None:
    # A DataLoader iterator stops its worker processes when it is garbage collected; a run that ends by an
    # exception keeps it alive in the traceback's frames, so the workers are stopped here instead.
    if isinstance(it, _MultiProcessingDataLoaderIter):
        it._shutdown_workers()


class TaskBase:
    """Defaults of the :class:`Task` hooks most tasks leave alone, and the helpers they share.

    Subclasses set ``env``, ``derived`` and ``device`` in ``setup``."""

    name = ""
    _open_steps: tuple = ()  # the steps_of passes begun and not finished
    env: DistEnv
    derived: Derived
    device: torch.device

    def param_groups(self, model: torch.nn.Module) -> list[dict]:
        return [{"params": list(model.parameters())}]

    def after_step(self) -> None:
        pass

    def final_eval(self, module: torch.nn.Module) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass

    def close(self) -> None:
        """Ends the open :meth:`steps_of` passes (stopping their loader workers now)."""
        for steps in self._open_steps:
            steps.close()  # runs the generator's finally: the workers stop
        self._open_steps = ()

    # ------------------------------------------------------------------ shared helpers

    def micro_batch_start(self, micro_index: int) -> int:
        """Index in the global batch of this rank's first sample of micro-batch ``micro_index`` (ranks interleave
        per micro-batch, as the step-indexed sampler hands them out)."""
        d = self.derived
        return (micro_index * self.env.world_size + self.env.rank) * d.micro_batch

    def steps_of(self, micro_batches: Iterable[dict], limit: int | None = None) -> Iterator[list[dict]]:
        """``micro_batches`` (at most ``limit`` of them) grouped into optimizer steps of ``grad_accum``; a partial
        last group is dropped. :meth:`close` ends the pass and stops its DataLoader workers."""
        steps = self._steps(micro_batches, limit)
        self._open_steps = (*(s for s in self._open_steps if s.gi_frame is not None), steps)  # gi_frame: None once done
        return steps

    def _steps(self, micro_batches: Iterable[dict], limit: int | None) -> Iterator[list[dict]]:
        it = iter(micro_batches)
        try:
            group: list[dict] = []
            for i, mb in enumerate(it):
                if limit is not None and i >= limit:
                    break
                group.append(mb)
                if len(group) == self.derived.grad_accum:
                    yield group
                    group = []
        finally:
            _stop_workers(it)

    @staticmethod
    def mean_over_ranks(total: torch.Tensor) -> float:
        """``total`` = (sum, count) on this rank, float64: the mean over every rank's items (collective)."""
        all_reduce_sum(total)
        return float(total[0] / total[1].clamp_min(1))
