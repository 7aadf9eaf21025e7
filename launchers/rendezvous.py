"""How the tasks of a multi-process SLURM job find each other, set in the job's sbatch script and shown by a dry run.

The ranks rendezvous over TCP at ``MASTER_ADDR:MASTER_PORT``: the address is the first node of the allocation
(rank 0 runs there, SLURM places tasks node by node) and the port is derived from the job id, so two jobs that
share a node do not collide and a requeued job (same id) comes back to the same port. The trainer would derive
both from SLURM's variables by itself (``cjepa.distributed.env.detect_env``); exporting them in the script makes them
visible in the job's environment and log, and identical on every node.

Clusters whose nodes have several network interfaces (Ethernet next to InfiniBand, a management network) need
NCCL and gloo told which one joins the nodes: ``NCCL_SOCKET_IFNAME`` / ``GLOO_SOCKET_IFNAME`` come from the
cluster preset's ``socket_ifname`` or ``launch.socket_ifname``.
"""

from __future__ import annotations

import shlex
from typing import Any

from cjepa.distributed.env import MASTER_PORT_BASE, MASTER_PORT_SPAN

# Written into the sbatch script (bash). `scontrol show hostnames` expands SLURM's bracket host lists.
MASTER_ADDR_LINE = 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"'
MASTER_PORT_LINE = f"export MASTER_PORT=$(( {MASTER_PORT_BASE} + SLURM_JOB_ID % {MASTER_PORT_SPAN} ))"


def world_size(launch) -> int:
    """Processes of one job: ``launch.nodes`` x ``launch.tasks_per_node`` (the one place that multiplies them)."""
    return launch.nodes * launch.tasks_per_node


def socket_ifname(launch, preset_ifname: str) -> str:
    """The interface that joins the nodes: ``launch.socket_ifname``, else the preset's; "" lets NCCL/gloo pick."""
    return launch.socket_ifname or preset_ifname


def rendezvous_lines(launch, preset_ifname: str) -> tuple[str, ...]:
    """sbatch script lines for a job of several ranks (none for one rank, which needs no rendezvous)."""
    if world_size(launch) == 1:
        return ()
    lines = [MASTER_ADDR_LINE, MASTER_PORT_LINE]
    ifname = socket_ifname(launch, preset_ifname)
    if ifname and launch.nodes > 1:
        quoted = shlex.quote(ifname)
        lines.append(f"export NCCL_SOCKET_IFNAME={quoted} GLOO_SOCKET_IFNAME={quoted}")
    lines.append('echo "[cjepa] rendezvous ${MASTER_ADDR}:${MASTER_PORT} over nodes ${SLURM_JOB_NODELIST}" >&2')
    return tuple(lines)


def describe_rendezvous(launch, preset_ifname: str, backend: str, timeout_s: int) -> list[tuple[str, Any]]:
    """Rows for ``cjepa submit --dry-run``: what the job's ranks will do to find each other."""
    world = world_size(launch)
    if world == 1:
        return [("rendezvous", "none (one process)")]
    ifname = socket_ifname(launch, preset_ifname)
    return [
        ("world size", f"{world} ranks = {launch.nodes} node(s) x {launch.tasks_per_node}; rank r runs on node "
                       f"r // {launch.tasks_per_node}"),
        ("master address", "the first node of $SLURM_JOB_NODELIST (rank 0's node)"),
        ("master port", f"{MASTER_PORT_BASE} + job id % {MASTER_PORT_SPAN} (a requeued job keeps its port)"),
        ("backend, timeout", f"{backend}, dist.timeout_s={timeout_s} (a lost rank fails the others after this long)"),
        ("socket interface", f"NCCL_SOCKET_IFNAME=GLOO_SOCKET_IFNAME={ifname}" if ifname and launch.nodes > 1
         else "chosen by NCCL/gloo (set launch.socket_ifname or the preset's socket_ifname)"),
        ("per-node logs", "job/logs/<job id>_<rank>_log.{out,err} and job/logs/nodes/<host>.log"),
    ]
