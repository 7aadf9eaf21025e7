"""The ``launch`` section: the SLURM resources that `cjepa submit` and `cjepa sweep` ask for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from cjepa.config.errors import ConfigError


@dataclass(kw_only=True)
class LaunchConfig:
    """How `cjepa submit` / `cjepa sweep` (launchers/) ask SLURM for resources; ignored by `cjepa train`."""

    # Preset in launchers/clusters.py that fills partition/account/qos/GPU defaults: "local" (a single-node
    # SLURM), "debug" (in-process, no SLURM: submitit's debug executor), or a cluster you add there.
    cluster: str = "local"
    nodes: int = 1
    tasks_per_node: int = 1  # processes per node; one per GPU for GPU training
    gpus_per_node: Optional[int] = None  # None: the preset's (usually tasks_per_node on GPU clusters)
    cpus_per_task: Optional[int] = None  # None: the preset's; also sets torch threads inside the job
    mem_gb: Optional[float] = None  # per node; None: the preset's (or the cluster default)
    timeout_min: int = 60  # wall-clock limit per attempt; a timed-out job checkpoints and requeues
    partition: str = ""  # "" = the preset's
    account: str = ""
    qos: str = ""
    constraint: str = ""
    # Requeues after a time-out before the job gives up (submitit's slurm_max_num_timeout). Preemptions
    # are always requeued.
    max_requeues: int = 3
    signal_delay_s: int = 120  # SLURM signals the job this long before its time limit (checkpoint + requeue)
    array_parallelism: int = 0  # a sweep runs at most this many jobs at once; 0 = no cap
    # Job folder (submitit logs and pickles, code snapshot, resolved config, git state). "": <run dir>/job
    # for `cjepa submit`, <out_dir>/<sweep name>/job for `cjepa sweep`.
    folder: str = ""
    snapshot: bool = True  # copy the repository's tracked files into the job folder and run from that copy
    exclusive: bool = False  # whole nodes for the job (sbatch --exclusive): no other job shares their network or cores
    # Interface joining the nodes of a multi-node job (NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME); "": the preset's
    socket_ifname: str = ""

    def validate(self) -> None:
        if self.nodes < 1 or self.tasks_per_node < 1:
            raise ConfigError("launch.nodes and launch.tasks_per_node must be >= 1")
        for key, v in (("gpus_per_node", self.gpus_per_node), ("cpus_per_task", self.cpus_per_task)):
            if v is not None and v < 0:
                raise ConfigError(f"launch.{key} must be >= 0")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise ConfigError("launch.mem_gb must be positive (or null for the preset's)")
        if self.timeout_min < 1:
            raise ConfigError("launch.timeout_min must be >= 1")
        if self.max_requeues < 0 or self.array_parallelism < 0 or self.signal_delay_s < 0:
            raise ConfigError(
                "launch.max_requeues, launch.array_parallelism and launch.signal_delay_s must be >= 0"
            )
        if self.signal_delay_s >= self.timeout_min * 60:
            raise ConfigError(
                f"launch.signal_delay_s={self.signal_delay_s} must be shorter than "
                f"launch.timeout_min={self.timeout_min} minutes"
            )
