"""Rank discovery (torchrun and SLURM variables), SLURM host lists, process-group timeouts, rank-0 logging."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from cjepa.distributed.env import (
    DistEnv,
    detect_env,
    expand_nodelist,
    init_process_group,
    log0,
    quiet_other_ranks,
    tasks_on_node,
)
from tests.helpers import free_port


@pytest.mark.parametrize("nodelist, hosts", [
    ("vm", ["vm"]),
    ("gpu[001-003,010],cpu7", ["gpu001", "gpu002", "gpu003", "gpu010", "cpu7"]),
    ("node[8-11]", ["node8", "node9", "node10", "node11"]),
    ("a[1-2]-ib,b3", ["a1-ib", "a2-ib", "b3"]),
    ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
    ("x[7]", ["x7"]),
])
def test_expand_nodelist(nodelist, hosts):
    """SLURM's bracket host-list syntax expands in order, keeping zero padding, suffixes and products."""
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["gpu[1-3", "gpu1-3]", "gpu[a-b]", "gpu[5-2]"])
def test_expand_nodelist_rejects_malformed(bad):
    """A malformed host list is an error naming it, never a wrong master address."""
    with pytest.raises(ValueError, match="host list"):
        expand_nodelist(bad)


def test_tasks_on_node():
    """SLURM_TASKS_PER_NODE's compressed form gives each node's task count."""
    assert [tasks_on_node("2(x3),1", i) for i in range(4)] == [2, 2, 2, 1]
    assert tasks_on_node("4", 0) == 4
    with pytest.raises(ValueError):
        tasks_on_node("2(x2)", 2)


def _slurm_step(**extra) -> dict[str, str]:
    """The variables srun sets for task 3 of a 2-node x 2-task step of job 1234."""
    env = {"SLURM_JOB_ID": "1234", "SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
           "SLURM_STEP_NODELIST": "gpu[007-008]", "SLURM_JOB_NODELIST": "gpu[007-008]"}
    env.update(extra)
    return env


def test_detect_env_from_srun_step():
    """An srun task knows its global and local rank, the world, its node's task count, and the master (first
    host of the step; port from the job id, the same for every task and across requeues)."""
    env = detect_env(_slurm_step())
    assert env == DistEnv(rank=3, world_size=4, local_rank=1, master_addr="gpu007", master_port=20000 + 1234,
                          source="slurm", local_world_size=2)


def test_detect_env_torchrun_wins_and_batch_script_is_single():
    """torchrun's variables take precedence (torchrun inside an allocation); the sbatch script itself (no step)
    is a single process; MASTER_ADDR/PORT given by the user win over the derived ones."""
    tr = detect_env({**_slurm_step(), "RANK": "1", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
                     "MASTER_ADDR": "h0", "MASTER_PORT": "29400"})
    got = (tr.rank, tr.world_size, tr.local_world_size, tr.master_addr, tr.master_port, tr.source)
    assert got == (1, 8, 4, "h0", 29400, "torchrun")
    batch = _slurm_step()
    del batch["SLURM_STEP_ID"]
    assert detect_env(batch) == DistEnv()
    assert detect_env(_slurm_step(SLURM_STEP_NUM_TASKS="1", SLURM_NTASKS="1")) == DistEnv()
    assert detect_env(_slurm_step(MASTER_ADDR="10.0.0.5", MASTER_PORT="4242")).master_addr == "10.0.0.5"


def test_rendezvous_timeout_names_the_address(monkeypatch):
    """A rank whose peers never arrive fails after dist.timeout_s with the master address in the message."""
    monkeypatch.setattr(os, "environ", os.environ.copy())  # init exports RANK/WORLD_SIZE: keep them out of this process
    port = free_port()
    env = DistEnv(rank=0, world_size=2, master_port=port)
    t0 = time.time()
    with pytest.raises(RuntimeError, match=f"127.0.0.1:{port}"):
        init_process_group(env, "gloo", timeout_s=2, device=torch.device("cpu"))
    assert time.time() - t0 < 20


def _stuck_peer(rank: int, port: int, out: Path) -> None:
    """Rank 1 joins and then stops answering; rank 0 waits in an all-reduce."""
    init_process_group(DistEnv(rank=rank, world_size=2, master_port=port), "gloo", timeout_s=3,
                       device=torch.device("cpu"))
    if rank == 1:
        time.sleep(40)
        return
    t0 = time.time()
    try:
        torch.distributed.all_reduce(torch.ones(1))
        outcome = "returned"
    except RuntimeError as err:
        outcome = f"{type(err).__name__}: {err}"
    (out / "rank0.json").write_text(json.dumps({"outcome": outcome, "waited": time.time() - t0}))
    os._exit(0)


@pytest.mark.dist
def test_stuck_rank_times_out_instead_of_hanging(tmp_path):
    """A collective with a rank that stopped answering raises after the process group's timeout."""
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_stuck_peer, args=(r, port, tmp_path)) for r in (0, 1)]
    for p in procs:
        p.start()
    procs[0].join(timeout=60)
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join()
    report = json.loads((tmp_path / "rank0.json").read_text())
    assert report["outcome"] != "returned", report
    assert 2.5 < report["waited"] < 15, report


def test_rank0_logging(capsys):
    """log0 prints on rank 0 only; library INFO chatter is silenced, rank 0 keeps warnings, others errors."""
    log0("hello", DistEnv(rank=0, world_size=2))
    log0("not me", DistEnv(rank=1, world_size=2))
    err = capsys.readouterr().err
    assert "hello" in err and "not me" not in err
    quiet_other_ranks(DistEnv(rank=1, world_size=2), libraries=("cjepa-test-lib",))
    assert logging.getLogger("cjepa-test-lib").level == logging.ERROR
    quiet_other_ranks(DistEnv(rank=0, world_size=2), libraries=("cjepa-test-lib",))
    assert logging.getLogger("cjepa-test-lib").level == logging.WARNING
