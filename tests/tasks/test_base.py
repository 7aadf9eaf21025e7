"""The shared task base: micro-batches grouped into optimizer steps, a rank's offset in the global batch, the
validation mean over ranks, and close() ending an open pass with its DataLoader workers."""

import multiprocessing
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader

from cjepa.distributed.env import DistEnv
from cjepa.tasks.base import TaskBase


def base(grad_accum=2, micro_batch=3, rank=0, world_size=1):
    t = TaskBase()
    t.derived = SimpleNamespace(grad_accum=grad_accum, micro_batch=micro_batch)
    t.env = DistEnv(rank=rank, world_size=world_size)
    return t


def test_steps_group_micro_batches_and_drop_a_partial_last_step():
    assert list(base(grad_accum=2).steps_of(range(7))) == [[0, 1], [2, 3], [4, 5]]


def test_steps_stop_at_the_limit():
    assert list(base(grad_accum=2).steps_of(range(100), limit=5)) == [[0, 1], [2, 3]]


def test_micro_batch_start_interleaves_ranks_per_micro_batch():
    # 2 ranks x 3 samples: micro-batch 0 is samples 0-5 (rank 0: 0-2, rank 1: 3-5), micro-batch 1 is 6-11
    assert [base(rank=r, world_size=2).micro_batch_start(j) for j in (0, 1) for r in (0, 1)] == [0, 3, 6, 9]


def test_mean_over_ranks_alone_and_with_nothing_counted():
    assert base().mean_over_ranks(torch.tensor([6.0, 4.0], dtype=torch.float64)) == 1.5
    assert base().mean_over_ranks(torch.tensor([0.0, 0.0], dtype=torch.float64)) == 0.0


def test_close_ends_an_open_pass_and_stops_its_loader_workers():
    t = base(grad_accum=1)
    steps = t.steps_of(DataLoader(list(range(64)), batch_size=2, num_workers=1))
    assert next(steps)[0].tolist() == [0, 1]  # one step taken: the worker runs
    assert len(multiprocessing.active_children()) == 1
    t.close()
    assert multiprocessing.active_children() == []
    assert list(steps) == []  # the pass is over
    t.close()  # twice is harmless
