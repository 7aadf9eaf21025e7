"""Where this process sits in a job: rank, world size, local rank, master address; process groups; rank-0 logs.

Read from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) or,
when a job step was started by SLURM's srun with several tasks, from SLURM_PROCID / SLURM_NTASKS /
SLURM_LOCALID / SLURM_NODEID / SLURM_STEP_TASKS_PER_NODE and the first host of the step's node list (SLURM's
bracket host-list syntax, ``gpu[001-004,010],cpu7``, is expanded here). Process groups are created with a
timeout so that a dead or stuck rank fails the job with an error instead of hanging it until the wall-clock
limit. Nothing here knows about submitit or sbatch scripts.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist

from cjepa.errors import UserError

# A SLURM job's rendezvous port: MASTER_PORT_BASE + job id % MASTER_PORT_SPAN (launchers/rendezvous.py writes the
# same rule into the sbatch script). Two jobs sharing a node get different ports; a requeued job keeps its id.
MASTER_PORT_BASE = 20000
MASTER_PORT_SPAN = 20000


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"  # single | torchrun | slurm
    local_world_size: int = 1  # processes of this job on this node (DeepSpeed's LOCAL_SIZE)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


# --------------------------------------------------------------------------------------------- SLURM parsing


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets: 'a[1,3],b' -> ['a[1,3]', 'b']."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in SLURM host list {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ValueError(f"unbalanced '[' in SLURM host list {text!r}")
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _expand_range_list(body: str, where: str) -> list[str]:
    """'001-003,010' -> ['001', '002', '003', '010'] (zero padding kept, as SLURM does)."""
    out = []
    for part in body.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise ValueError(f"bad range {part!r} in SLURM host list {where!r}")
        lo, hi = m.group(1), m.group(2)
        if hi is None:
            out.append(lo)
            continue
        if int(hi) < int(lo):
            raise ValueError(f"descending range {part!r} in SLURM host list {where!r}")
        width = len(lo)
        out.extend(f"{i:0{width}d}" for i in range(int(lo), int(hi) + 1))
    return out


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM host-list syntax -> host names, in order.

    'gpu[001-003,010],cpu7' -> gpu001 gpu002 gpu003 gpu010 cpu7; several bracket groups in one name expand as
    a product ('r[1-2]n[1-2]' -> r1n1 r1n2 r2n1 r2n2), text after a bracket is kept ('a[1-2]-ib').
    """
    hosts: list[str] = []
    for item in _split_top_level(nodelist):
        pieces = re.split(r"(\[[^\]]*\])", item)  # literal text and [ranges], alternating
        choices = [_expand_range_list(p[1:-1], nodelist) if p.startswith("[") else [p] for p in pieces if p]
        hosts.extend("".join(combo) for combo in itertools.product(*choices))
    return hosts


def tasks_on_node(tasks_per_node: str, node_id: int) -> int:
    """SLURM_TASKS_PER_NODE syntax ('2(x3),1') -> the task count of node `node_id` (0-based)."""
    counts: list[int] = []
    for part in tasks_per_node.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not m:
            raise ValueError(f"bad SLURM tasks-per-node value {tasks_per_node!r}")
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    if not 0 <= node_id < len(counts):
        raise ValueError(f"node {node_id} not in SLURM tasks-per-node {tasks_per_node!r}")
    return counts[node_id]


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """torchrun variables win; else an srun step with several tasks; else a single process."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        return DistEnv(
            rank=int(env["RANK"]),
            world_size=world,
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            source="torchrun",
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", env.get("LOCAL_SIZE", world))),
        )
    ntasks = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1"))) or 1)
    # Only an srun step (SLURM_STEP_ID set) runs one process per task; the batch script itself is one process.
    if ntasks > 1 and "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
        hosts = expand_nodelist(nodelist) if nodelist else []
        job = int(env.get("SLURM_JOB_ID", "0") or 0)
        per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE")
        local_world = tasks_on_node(per_node, int(env.get("SLURM_NODEID", 0))) if per_node else ntasks
        return DistEnv(
            rank=int(env["SLURM_PROCID"]),
            world_size=ntasks,
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            master_addr=env.get("MASTER_ADDR") or (hosts[0] if hosts else "127.0.0.1"),
            # A port derived from the job id keeps two jobs on one node apart; a requeued job keeps its id.
            master_port=int(env.get("MASTER_PORT") or MASTER_PORT_BASE + job % MASTER_PORT_SPAN),
            source="slurm",
            local_world_size=local_world,
        )
    return DistEnv()


def export_env(env: DistEnv) -> None:
    """Publish the torchrun-style variables (DeepSpeed and torch read them; DeepSpeed at import time)."""
    os.environ.update(
        RANK=str(env.rank), WORLD_SIZE=str(env.world_size), LOCAL_RANK=str(env.local_rank),
        LOCAL_SIZE=str(env.local_world_size), LOCAL_WORLD_SIZE=str(env.local_world_size),
        MASTER_ADDR=env.master_addr, MASTER_PORT=str(env.master_port),
    )


def pick_device(requested: str, env: DistEnv) -> torch.device:
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        raise UserError(f"run.device=cuda but no CUDA device is visible (torch {torch.__version__}, {build}); "
                        "use run.device=cpu or run.device=auto")
    idx = env.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(idx)
    return torch.device("cuda", idx)


# --------------------------------------------------------------------------------------------- process groups


def resolve_backend(backend: str, device: torch.device) -> str:
    return ("nccl" if device.type == "cuda" else "gloo") if backend == "auto" else backend


class RendezvousError(RuntimeError):
    """The ranks could not form their process group (a wrong master address or port, a blocked network)."""


def init_process_group(env: DistEnv, backend: str, timeout_s: int, device: torch.device) -> None:
    """Create the default process group for a multi-process run (no-op for one process).

    ``timeout_s`` bounds the rendezvous and every collective: if a rank dies or stops answering, the others
    raise (gloo: "timed out" / "connection closed by peer"; nccl: the watchdog aborts) instead of hanging.
    """
    if not env.distributed or dist.is_initialized():
        return
    if timeout_s <= 0:
        raise ValueError(f"dist.timeout_s={timeout_s} must be positive: a dead rank must fail the job, not hang it")
    backend = resolve_backend(backend, device)
    export_env(env)
    try:
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{env.master_addr}:{env.master_port}",
            rank=env.rank,
            world_size=env.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except Exception as err:  # name what we tried, the raw error rarely does
        raise RendezvousError(
            f"rank {env.rank}/{env.world_size}: could not join the {backend} process group at "
            f"{env.master_addr}:{env.master_port} within dist.timeout_s={timeout_s} s ({type(err).__name__}: {err})"
        ) from err


def init_single_process_group(backend: str, device: torch.device, timeout_s: int) -> None:
    """A world of one, in memory (no port): engines like DeepSpeed need a process group even alone."""
    if dist.is_initialized():
        return
    dist.init_process_group(
        backend=resolve_backend(backend, device), store=dist.HashStore(), rank=0, world_size=1,
        timeout=datetime.timedelta(seconds=max(timeout_s, 1)),
    )


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (identity for one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_min(t: torch.Tensor) -> torch.Tensor:
    """Minimum over ranks in place (identity for one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t


# --------------------------------------------------------------------------------------------- rank-0 logging


def log0(msg: str, env: DistEnv | None = None) -> None:
    """Print on rank 0 only (stderr, so it interleaves with tqdm bars and keeps stdout for tables)."""
    if (env or detect_env()).is_main:
        print(f"[cjepa] {msg}", file=sys.stderr, flush=True)


def quiet_other_ranks(env: DistEnv, libraries: tuple[str, ...] = ("DeepSpeed", "deepspeed")) -> None:
    """Silence library INFO chatter (DeepSpeed prints its whole config and timers on every rank; the run dir
    keeps deepspeed_config.json instead): rank 0 keeps warnings, the other ranks errors, so duplicated warnings
    do not flood the log but a failing rank is never silent."""
    for name in libraries:
        logging.getLogger(name).setLevel(logging.WARNING if env.is_main else logging.ERROR)
