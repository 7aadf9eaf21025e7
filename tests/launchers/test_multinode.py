"""Jobs across nodes (marker ``multinode``): the namespaced nodes of ``cluster/local_slurm.sh`` (CI runs four of
2 CPUs each), jobs submitted through sbatch by the launchers. Skipped only where network namespaces cannot be
created; a cluster with too few nodes is an error that says how to start a larger one.

* parity: DDP and ZeRO-2 over 2 nodes, ZeRO-3 over 4 nodes end with the parameters of one process on the full
  batch (the DeepSpeed tests' tolerance); a 2-node job array (`cjepa sweep`) and a 2-node `cjepa pretrain` job
  complete; a 4-node ZeRO-3 checkpoint resumes on 2 nodes;
* faults: a rank's process killed mid-run, and a node's link taken down: the survivor fails within
  ``dist.timeout_s``, requeues the job, which resumes from its last checkpoint (not from step 0) and ends with
  the parameters of the same job left alone, every logged step present once.

The jobs are tiny (the smoke predictor, a few steps); their wall time is mostly process start-up.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cjepa.config import load_config
from cjepa.distributed.env import expand_nodelist
from cjepa.trainer import Trainer, build_task
from cjepa.utils.checkpoint import latest_checkpoint, list_checkpoints, load_model_state
from launchers import sweep as sweep_launcher
from launchers.submit import job_result, submit
from tests.distributed.test_deepspeed import ATOL, COMMON, RTOL
from tests.helpers import REPO, SMOKE, assert_close_verbose, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.multinode]

SCRIPT = REPO / "cluster" / "local_slurm.sh"
PRETRAIN = str(REPO / "configs" / "smoke" / "pretrain.yaml")
ENCODER = str(REPO / "configs" / "smoke" / "encoder.yaml")
TIMEOUT_S = 20  # dist.timeout_s of the fault jobs: the bound on how long a survivor may wait for a lost peer
# The fault jobs: long enough (in steps) that a fault lands mid-run, checkpoints every 10 steps.
FAULT = ["model.dropout=0.0", "optim.eps=1e-6", "train.max_steps=150", "train.ckpt_every=10", "train.val_every=1000",
         "train.log_every=1", "train.keep_checkpoints=0", f"dist.timeout_s={TIMEOUT_S}", "dist.engine=ddp",
         "launch.nodes=2", "launch.max_requeues=2"]


def _ready_nodes() -> list[str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=30).stdout
    return sorted({n for n, state in (line.split() for line in out.splitlines())
                   if state.rstrip("*~#") in ("idle", "mixed", "allocated", "completing")})


def _need_nodes(n: int) -> None:
    have = _ready_nodes()
    if len(have) < n:
        pytest.fail(f"the local SLURM has {len(have)} ready node(s) ({', '.join(have) or 'none'}), this test needs "
                    f"{n}: "
                    f"bash cluster/local_slurm.sh up --nodes 4")


def _single_process(out: Path, name: str, overrides: list[str]) -> dict:
    """The reference: one process on the full batch, in this process."""
    cfg = load_config([SMOKE], [f"run.out_dir={out}", f"run.name={name}", "dist.engine=single", *overrides])
    Trainer(cfg, build_task(cfg), progress=False).fit()
    return load_model_state(latest_checkpoint(out / name))


def _assert_same(ours: dict, ref: dict, what: str, atol: float = ATOL, rtol: float = RTOL) -> None:
    assert ours.keys() == ref.keys(), f"{what}: different parameter names"
    for k in ref:
        assert_close_verbose(ours[k], ref[k], atol=atol, rtol=rtol, name=f"{what}: {k}")


def _nodes_of(sub) -> list[str]:
    """The running job's nodes in rank order (SLURM places ranks block-wise: rank 0 on the first node)."""
    out = subprocess.run(["squeue", "-h", "-j", str(sub.job.job_id), "-o", "%N"], capture_output=True, text=True,
                         timeout=30).stdout.strip()
    return expand_nodelist(out)


# --------------------------------------------------------------------------------------------- parity


# DDP and ZeRO-1/2/3, each with one rank on each of 2 and of 4 nodes
ENGINE_OVERRIDES = {"ddp": ["dist.engine=ddp"], **{f"zero{k}": ["dist.engine=deepspeed", f"dist.zero_stage={k}"]
                                                   for k in (1, 2, 3)}}
ENGINE_NAMES = {"ddp": "ddp", **{f"zero{k}": f"deepspeed-zero{k}" for k in (1, 2, 3)}}
PARITY_JOBS = [(engine, nodes) for engine in ENGINE_OVERRIDES for nodes in (2, 4)]


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Submit every parity job at once (they queue for the nodes), then the single-process reference here."""
    _need_nodes(4)
    out = tmp_path_factory.mktemp("multinode")
    base = [f"run.out_dir={out}", *COMMON, "dist.timeout_s=120"]
    jobs = {f"{engine}x{nodes}": submit([SMOKE], [*base, f"run.name={engine}x{nodes}", f"launch.nodes={nodes}",
                                                  *ENGINE_OVERRIDES[engine]])
            for engine, nodes in PARITY_JOBS}
    sweep = sweep_launcher.plan([SMOKE], [*base, "launch.nodes=2", "dist.engine=ddp", "masking.num_masked=1,2"],
                                name="sweep2")
    sweep_launcher.submit(sweep, "sweep2")
    reference = _single_process(out, "single", COMMON)
    return out, jobs, sweep, reference


@pytest.mark.parametrize("engine,nodes", PARITY_JOBS)
def test_data_parallel_across_nodes_equals_one_process(parity, engine, nodes):
    """Each rank on its own node, one rank per node: the job ends with the parameters of one process on the full
    batch, every rank found rank 0 on the first node of the allocation, and each node wrote its own log."""
    out, jobs, _, reference = parity
    name = f"{engine}x{nodes}"
    sub = jobs[name]
    results = sub.job.results()
    assert len(results) == nodes
    summary = results[0]
    assert (summary["world_size"], summary["engine"], summary["steps"]) == (nodes, ENGINE_NAMES[engine], 4)
    _assert_same(load_model_state(latest_checkpoint(sub.run_dir)), reference, name)
    logs = sorted(Path(sub.job.paths.folder, "nodes").glob("*.log"))
    assert len(logs) == nodes, f"one log per node: {logs}"
    starts = [line for log in logs for line in log.read_text().splitlines() if " start rank " in line]
    hosts = sorted(log.stem for log in logs)
    assert len(starts) == nodes and all(f"master {hosts[0]}:" in line for line in starts), starts
    assert all("interface eth0" in line for line in starts), starts


def test_two_node_sweep_array(parity):
    """`cjepa sweep` with launch.nodes=2: one job array whose every task spans two nodes and completes."""
    _, _, sweep, _ = parity
    outcome = sweep_launcher.wait(sweep, poll_s=1.0)
    assert len({str(j.job.job_id).split("_")[0] for j in sweep}) == 1, "one job array"
    for j in sweep:
        assert "error" not in outcome[j.index], outcome[j.index]
        assert outcome[j.index]["world_size"] == 2 and outcome[j.index]["steps"] == 4
        assert len(list(Path(j.job.paths.folder, "nodes").glob("*.log"))) >= 2


def test_zero3_resumes_on_fewer_nodes(parity, tmp_path):
    """The 4-node ZeRO-3 run's step-2 checkpoint, resumed by a 2-node job (DeepSpeed's universal format converts
    the 4 shards to 2), ends at step 4 with the parameters of one process on the full batch."""
    out, jobs, _, reference = parity
    jobs["zero3x4"].job.results()
    src = jobs["zero3x4"].run_dir / "checkpoints" / "step_0000002"
    target = tmp_path / "zero3x2" / "checkpoints" / src.name
    shutil.copytree(src, target)
    sub = submit([SMOKE], [f"run.out_dir={tmp_path}", "run.name=zero3x2", *COMMON, "dist.timeout_s=120",
                           "launch.nodes=2", "dist.engine=deepspeed", "dist.zero_stage=3"])
    summary = sub.job.results()[0]
    assert (summary["world_size"], summary["steps"]) == (2, 4)
    assert (
        "resumed from" in Path(sub.job.paths.stderr).read_text()
        and "at step 2" in Path(sub.job.paths.stderr).read_text()
    )
    _assert_same(load_model_state(latest_checkpoint(sub.run_dir)), reference, "zero3 4 nodes -> 2 nodes")


def test_pretrain_on_two_nodes(tmp_path):
    """`cjepa pretrain` (raw video shards -> frozen encoder -> predictor) as a 2-node DDP job: each rank streams
    its own shards and the job trains to the end."""
    _need_nodes(2)
    from cjepa.config import WorldConfig
    from cjepa.data.world.generate import generate_split
    from cjepa.trainer import train

    wc = WorldConfig(height=32, width=32, num_frames=24, future_frames=8, min_objects=2, max_objects=3, shard_size=4,
                     seed=1)
    generate_split(wc, "train", 8, tmp_path / "shards", workers=1, progress=False)
    generate_split(wc, "val", 2, tmp_path / "shards", workers=1, progress=False)
    train(load_config([ENCODER], [f"run.out_dir={tmp_path}", f"encoder.data.path={tmp_path / 'shards'}",
                                  "train.max_steps=2"]), progress=False)
    sub = submit([PRETRAIN], [f"run.out_dir={tmp_path}", "run.name=pretrain2", f"data.shards={tmp_path / 'shards'}",
                              f"encoder.checkpoint={tmp_path / 'smoke_encoder'}", "launch.nodes=2", "dist.engine=ddp",
                              "dist.timeout_s=120"])
    results = sub.job.results()
    assert len(results) == 2
    assert (results[0]["world_size"], results[0]["engine"], results[0]["steps"]) == (2, "ddp", 6)
    assert results[0]["val/loss_future"] > 0
    assert len(list(Path(sub.job.paths.folder, "nodes").glob("*.log"))) == 2


# --------------------------------------------------------------------------------------------- faults


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The fault jobs' configuration, left alone (submitted once, waited for by each fault test)."""
    _need_nodes(2)
    out = tmp_path_factory.mktemp("fault_reference")
    return submit([SMOKE], [f"run.out_dir={out}", "run.name=reference", *FAULT])


def _job_pids_in(node: str, job_id: str) -> list[int]:
    """The job's task processes (python) running in `node`'s network namespace."""
    ns = f"cjepa-{node}"
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30).stdout.split()
    found = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if "submitit" in cmd and f"SLURM_JOB_ID={job_id}".encode() in env:
            found.append(int(pid))
    return found


def _lost_peer_time(sub, host: str) -> float | None:
    """When `host`'s task logged that it lost a peer (epoch seconds), None before it did."""
    log = Path(sub.job.paths.folder, "nodes", f"{host}.log")
    for line in log.read_text().splitlines() if log.exists() else []:
        if " lost a peer " in line:
            return datetime.datetime.fromisoformat(line.split()[0]).timestamp()
    return None


def _checkpoint_reached(sub, min_step: int) -> bool:
    ckpts = list_checkpoints(sub.run_dir) if (sub.run_dir / "checkpoints").is_dir() else []
    return any(int(p.name.split("_")[1]) >= min_step for p in ckpts)


def _assert_resumed_like_uninterrupted(sub, reference) -> int:
    """The job resumed once, from a checkpoint after step 0, and ends exactly like the uninterrupted job, with
    every logged step in metrics.jsonl once; returns the step it resumed at."""
    result = job_result(sub.job)
    ref_result = job_result(reference.job)
    assert result["steps"] == ref_result["steps"] == 150
    log = Path(sub.job.paths.stderr).read_text()
    resumes = [int(s) for s in re.findall(r"resumed from \S+ at step (\d+)", log)]
    assert len(resumes) == 1 and 0 < resumes[0] < 150, f"one resume from a checkpoint: {resumes}\n{log[-3000:]}"
    _assert_same(load_model_state(latest_checkpoint(sub.run_dir)),
                 load_model_state(latest_checkpoint(reference.run_dir)),
                 "resumed vs uninterrupted", atol=0, rtol=0)
    steps = [json.loads(line)["step"] for line in (sub.run_dir / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in line]
    assert steps == list(range(1, 151)), "every logged step once: nothing lost, nothing twice"
    return resumes[0]


@pytest.mark.slow
def test_killed_rank_fails_the_survivor_and_the_job_resumes(tmp_path, uninterrupted):
    """SIGKILL to rank 1's process on the second node mid-run: rank 0 fails at once (well within
    dist.timeout_s), requeues the job, and the job resumes from its last checkpoint to the uninterrupted job's
    parameters."""
    sub = submit([SMOKE], [f"run.out_dir={tmp_path}", "run.name=killed", *FAULT])
    wait_for(lambda: _checkpoint_reached(sub, 10), 600, "the first checkpoint")
    first, second = _nodes_of(sub)
    victims = _job_pids_in(second, sub.job.job_id)
    assert victims, f"no task of job {sub.job.job_id} found on {second}"
    subprocess.run(["kill", "-KILL", *map(str, victims)], check=True, timeout=30)
    killed_at = time.time()
    wait_for(lambda: _lost_peer_time(sub, first) is not None, TIMEOUT_S + 30, f"rank 0 on {first} to fail")
    assert _lost_peer_time(sub, first) - killed_at <= TIMEOUT_S + 2
    resumed_at = _assert_resumed_like_uninterrupted(sub, uninterrupted)
    print(f"killed rank 1 on {second}: survivor failed after {_lost_peer_time(sub, first) - killed_at:.1f} s, "
          f"resumed at step {resumed_at}")


@pytest.mark.slow
def test_link_down_fails_the_survivor_within_the_timeout_and_the_job_resumes(tmp_path, uninterrupted):
    """The second node's link goes down mid-run: rank 0 fails within dist.timeout_s (no hang), requeues the job;
    with the link back the job resumes from its last checkpoint to the uninterrupted job's parameters."""
    sub = submit([SMOKE], [f"run.out_dir={tmp_path}", "run.name=cut", *FAULT])
    wait_for(lambda: _checkpoint_reached(sub, 10), 600, "the first checkpoint")
    first, second = _nodes_of(sub)
    index = second.removeprefix("node")
    subprocess.run(["bash", str(SCRIPT), "link", index, "down"], check=True, timeout=30, capture_output=True)
    cut_at = time.time()
    try:
        wait_for(lambda: _lost_peer_time(sub, first) is not None, TIMEOUT_S + 60, f"rank 0 on {first} to fail")
    finally:
        subprocess.run(["bash", str(SCRIPT), "link", index, "up"], check=True, timeout=30, capture_output=True)
    waited = _lost_peer_time(sub, first) - cut_at
    assert waited <= TIMEOUT_S + 15, f"the survivor waited {waited:.1f} s for a lost peer (dist.timeout_s={TIMEOUT_S})"
    resumed_at = _assert_resumed_like_uninterrupted(sub, uninterrupted)
    print(f"link of {second} down: survivor failed after {waited:.1f} s, resumed at step {resumed_at}")
