"""Where this process sits in a job: rank, world size, local rank, master address.

Read from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or, when a job step
was started by SLURM's srun with several tasks, from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and the first
host of SLURM_NODELIST. Process groups are created with a timeout so that a dead rank fails the job instead of
hanging it. Nothing here knows about submitit or sbatch scripts.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"  # single | torchrun | slurm

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM host-list syntax -> host names: 'gpu[001-003,010],cpu7' -> gpu001 gpu002 gpu003 gpu010 cpu7."""
    hosts: list[str] = []
    for m in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?(?:,|$)", nodelist):
        prefix, ranges = m.group(1), m.group(2)
        if not prefix:
            continue
        if ranges is None:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-")
                width = len(lo)
                hosts.extend(f"{prefix}{i:0{width}d}" for i in range(int(lo), int(hi) + 1))
            else:
                hosts.append(prefix + part)
    return hosts


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            source="torchrun",
        )
    ntasks = int(env.get("SLURM_NTASKS", env.get("SLURM_NPROCS", "1")) or 1)
    if ntasks > 1 and "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        hosts = expand_nodelist(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "127.0.0.1"))
        job = int(env.get("SLURM_JOB_ID", "0") or 0)
        return DistEnv(
            rank=int(env["SLURM_PROCID"]),
            world_size=ntasks,
            local_rank=int(env.get("SLURM_LOCALID", 0)),
            master_addr=env.get("MASTER_ADDR") or (hosts[0] if hosts else "127.0.0.1"),
            # A port derived from the job id keeps two jobs on one node apart.
            master_port=int(env.get("MASTER_PORT") or 20000 + job % 20000),
            source="slurm",
        )
    return DistEnv()


def export_env(env: DistEnv) -> None:
    """Publish the torchrun-style variables (DeepSpeed and torch read them)."""
    os.environ.update(
        RANK=str(env.rank), WORLD_SIZE=str(env.world_size), LOCAL_RANK=str(env.local_rank),
        LOCAL_SIZE=os.environ.get("LOCAL_SIZE", os.environ.get("LOCAL_WORLD_SIZE", str(env.world_size))),
        MASTER_ADDR=env.master_addr, MASTER_PORT=str(env.master_port),
    )


def pick_device(requested: str, env: DistEnv) -> torch.device:
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("run.device=cuda but no CUDA device is visible")
    idx = env.local_rank % torch.cuda.device_count()
    torch.cuda.set_device(idx)
    return torch.device("cuda", idx)


def init_process_group(env: DistEnv, backend: str, timeout_s: int, device: torch.device) -> None:
    """Create the default process group for a multi-process run (no-op for one process)."""
    if not env.distributed or dist.is_initialized():
        return
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    export_env(env)
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{env.master_addr}:{env.master_port}",
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place (identity for one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj, src: int = 0):
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]
    return obj
