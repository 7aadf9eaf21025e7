"""Cluster presets -> submitit parameters: preset defaults, launch.* overrides, and requests a preset refuses."""

from __future__ import annotations

import pytest

from cjepa.config import load_config
from launchers.clusters import PRESETS, ClusterError, executor_parameters, get_preset
from tests.helpers import SMOKE


def _launch(*overrides: str):
    return load_config([SMOKE], list(overrides)).launch


def test_local_preset_targets_the_local_cluster():
    """`local` is cluster/local_slurm.sh's SLURM: partition debug, 1 CPU per task, no GPUs, our requeue budget and
    signal; the job's own setup lines come first, then the rendezvous of its two ranks."""
    p = executor_parameters(_launch("launch.tasks_per_node=2", "launch.max_requeues=5"), get_preset("local"), name="x",
                            setup=("export A=1",))
    assert p["slurm_partition"] == "debug" and p["cpus_per_task"] == 1 and p["tasks_per_node"] == 2
    assert "gpus_per_node" not in p and "mem_gb" not in p and "slurm_account" not in p
    assert p["slurm_max_num_timeout"] == 5 and p["slurm_signal_delay_s"] == 120
    assert p["slurm_setup"][0] == "export A=1" and p["slurm_setup"][1].startswith("export MASTER_ADDR=")


def test_job_script_ignores_the_submitters_rank_variables(tmp_path):
    """The sbatch script unsets torchrun-style rank variables inherited from the submitting shell, runs inside the
    snapshot, and names the time-limit signal the job's submitit handler listens to."""
    from launchers.submit import job_setup_lines

    lines = job_setup_lines(tmp_path / "code")
    assert lines[0].startswith("unset ") and {"RANK", "WORLD_SIZE", "MASTER_ADDR"} <= set(lines[0].split())
    assert "export SUBMITIT_PREEMPT_SIGNAL=USR1" in lines and f"cd {tmp_path / 'code'}" in lines


def test_launch_values_override_the_preset():
    """Set launch.* values win over the preset's; unset ones (empty / null) keep it."""
    p = executor_parameters(_launch("launch.partition=big", "launch.account=proj1", "launch.gpus_per_node=4",
                                    "launch.cpus_per_task=6", "launch.mem_gb=64", "launch.array_parallelism=3"),
                            get_preset("gpu-example"), name="x")
    got = (p["slurm_partition"], p["slurm_account"], p["gpus_per_node"], p["cpus_per_task"], p["mem_gb"])
    assert got == ("big", "proj1", 4, 6, 64)
    assert p["slurm_array_parallelism"] == 3 and p["slurm_additional_parameters"] == {"exclusive": True}
    d = executor_parameters(_launch(), get_preset("gpu-example"), name="x")
    assert (d["slurm_partition"], d["gpus_per_node"], d["cpus_per_task"], d["mem_gb"]) == ("gpu", 8, 10, 480)


def test_presets_refuse_what_they_cannot_do():
    """Unknown presets, a multi-task debug job and a time limit beyond the partition's are errors that say so."""
    with pytest.raises(ClusterError, match="not a preset"):
        get_preset("nope")
    with pytest.raises(ClusterError, match="one process"):
        executor_parameters(_launch("launch.tasks_per_node=2"), PRESETS["debug"], name="x")
    with pytest.raises(ClusterError, match="exceeds"):
        executor_parameters(_launch("launch.timeout_min=100000"), PRESETS["gpu-example"], name="x")
