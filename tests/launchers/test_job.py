"""Which failures of a multi-process job make a survivor requeue it: a lost peer yes, a failed rendezvous or a
bug no. The messages are the ones gloo raised in a 2-process run where one process was killed, or hung."""

from __future__ import annotations

import pytest

from cjepa.distributed.env import RendezvousError
from launchers.job import lost_peer

KILLED = ("[../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:8591: Connection reset by peer. "
          "This is typically caused by a remote worker hanging or bugs in the application.")
HUNG = ("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 8000ms for recv operation "
        "to complete")


@pytest.mark.parametrize("message", [KILLED, HUNG])
def test_a_peer_gone_is_a_lost_peer(message):
    assert lost_peer(RuntimeError(message))


def test_rendezvous_failures_and_bugs_are_not():
    assert not lost_peer(RendezvousError(f"rank 1/2: could not join the gloo process group at node1:20001 ({HUNG})"))
    assert not lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x16 and 8x16)"))
    assert not lost_peer(ValueError("timed out"))


def test_only_a_slurm_job_of_several_ranks_requeues(monkeypatch):
    """Outside SLURM, or in a job of one process, nothing is requeued (and no scontrol is run)."""
    from launchers.job import requeue_after_lost_peer

    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    assert not requeue_after_lost_peer(RuntimeError(HUNG), max_requeues=3)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    for var in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_NPROCS"):
        monkeypatch.delenv(var, raising=False)
    assert not requeue_after_lost_peer(RuntimeError(HUNG), max_requeues=3)
