"""Cluster presets: the partition, account, QoS and per-node shape a SLURM cluster wants, in one place.

A run's ``launch`` section (cjepa/config/) names a preset with ``launch.cluster``; any ``launch.*`` value that
is set (not empty / null) overrides the preset's. Add your cluster here: nothing secret belongs in it (accounts
are names, not credentials), and the shell lines in ``setup`` run in the sbatch script before the job starts
(module loads, environment activation).

``local`` is the SLURM that ``cluster/local_slurm.sh`` brings up on this machine (one or several namespaced
nodes; a development box or CI; see the README), ``debug`` runs the
job in the submitting process through submitit's debug executor, with no SLURM at all (breakpoints work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from launchers.rendezvous import rendezvous_lines, world_size


@dataclass(frozen=True)
class ClusterPreset:
    name: str
    executor: Literal["slurm", "debug"]
    description: str
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    gpus_per_node: int = 0  # default when launch.gpus_per_node is null
    cpus_per_task: int = 1
    mem_gb: Optional[float] = None  # per node; None: the cluster's default
    max_timeout_min: Optional[int] = None  # the partition's time limit, checked before submitting
    setup: tuple[str, ...] = ()  # shell lines before the job (e.g. "module load cuda/12.4")
    sbatch: dict[str, Any] = field(default_factory=dict)  # extra #SBATCH flags, e.g. {"exclusive": True}
    # The network interface that joins the nodes (NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME of multi-node jobs);
    # "" lets NCCL and gloo choose, which goes wrong where nodes have several interfaces.
    socket_ifname: str = ""


PRESETS: dict[str, ClusterPreset] = {
    "local": ClusterPreset(
        name="local",
        executor="slurm",
        description="SLURM on this machine (cluster/local_slurm.sh; partition 'debug'), CPU only",
        partition="debug",
        cpus_per_task=1,
        socket_ifname="eth0",  # each namespaced node's one link to the others
    ),
    "debug": ClusterPreset(
        name="debug",
        executor="debug",
        description="no SLURM: runs in the submitting process (submitit debug executor); one task only",
    ),
    # A typical GPU cluster, as a template: 8 GPUs per node, one task per GPU, 10 cores each.
    "gpu-example": ClusterPreset(
        name="gpu-example",
        executor="slurm",
        description="template for a GPU cluster: copy, rename and fill in partition/account/qos",
        partition="gpu",
        gpus_per_node=8,
        cpus_per_task=10,
        mem_gb=480,
        max_timeout_min=72 * 60,
        sbatch={"exclusive": True},
    ),
}


class ClusterError(ValueError):
    """An unknown preset or a request the preset cannot satisfy; the message says what and what to change."""


def get_preset(name: str) -> ClusterPreset:
    if name not in PRESETS:
        raise ClusterError(f"launch.cluster={name!r} is not a preset; choose one of {', '.join(PRESETS)} "
                           "(or add yours to launchers/clusters.py)")
    return PRESETS[name]


def executor_parameters(launch, preset: ClusterPreset, *, name: str, setup: tuple[str, ...] = ()) -> dict[str, Any]:
    """submitit AutoExecutor parameters from a ``launch`` config section over a preset."""
    if preset.executor == "debug":
        if world_size(launch) != 1:
            raise ClusterError("launch.cluster=debug runs one process in the submitting one; "
                               "use launch.nodes=1 launch.tasks_per_node=1 (or a SLURM preset)")
        return {"timeout_min": launch.timeout_min, "name": name}
    if preset.max_timeout_min is not None and launch.timeout_min > preset.max_timeout_min:
        raise ClusterError(f"launch.timeout_min={launch.timeout_min} exceeds the {preset.name} limit of "
                           f"{preset.max_timeout_min} minutes")
    gpus = preset.gpus_per_node if launch.gpus_per_node is None else launch.gpus_per_node
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": launch.timeout_min,
        "nodes": launch.nodes,
        "tasks_per_node": launch.tasks_per_node,
        "cpus_per_task": preset.cpus_per_task if launch.cpus_per_task is None else launch.cpus_per_task,
        "slurm_partition": launch.partition or preset.partition or None,
        "slurm_account": launch.account or preset.account or None,
        "slurm_qos": launch.qos or preset.qos or None,
        "slurm_constraint": launch.constraint or preset.constraint or None,
        "slurm_max_num_timeout": launch.max_requeues,
        "slurm_signal_delay_s": launch.signal_delay_s,
        # after `setup`, which clears rank variables inherited from the submitting shell
        "slurm_setup": [*preset.setup, *setup, *rendezvous_lines(launch, preset.socket_ifname)],
        "slurm_additional_parameters": {**preset.sbatch, **({"exclusive": True} if launch.exclusive else {})},
    }
    if gpus:
        params["gpus_per_node"] = gpus
    mem = preset.mem_gb if launch.mem_gb is None else launch.mem_gb
    if mem is not None:
        params["mem_gb"] = mem
    if launch.array_parallelism:
        params["slurm_array_parallelism"] = launch.array_parallelism
    return {k: v for k, v in params.items() if v is not None}
