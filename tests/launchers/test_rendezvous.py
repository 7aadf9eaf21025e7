"""The rendezvous a multi-process SLURM job's sbatch script exports, and what a dry run says about it."""

from __future__ import annotations

import subprocess

from cjepa.config import load_config
from cjepa.distributed.env import detect_env
from launchers.clusters import executor_parameters, get_preset
from launchers.rendezvous import MASTER_PORT_LINE, describe_rendezvous, rendezvous_lines
from tests.helpers import SMOKE


def _launch(*overrides: str):
    return load_config([SMOKE], list(overrides)).launch


def test_one_rank_needs_no_rendezvous():
    assert rendezvous_lines(_launch(), "eth0") == ()
    assert describe_rendezvous(_launch(), "eth0", "gloo", 60) == [("rendezvous", "none (one process)")]


def test_script_port_is_the_one_the_trainer_derives():
    """The sbatch line and cjepa.distributed.env compute the same port from the job id (one rule, two places that use
    it): run the line in bash and compare with what the trainer derives from the same SLURM variables."""
    job_id = 4567891
    out = subprocess.run(["bash", "-c", f"{MASTER_PORT_LINE}; echo $MASTER_PORT"], capture_output=True, text=True,
                         env={"SLURM_JOB_ID": str(job_id), "PATH": "/usr/bin:/bin"}, check=True, timeout=30)
    slurm = {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_STEP_ID": "0", "SLURM_JOB_ID": str(job_id),
             "SLURM_STEP_NODELIST": "node[1-2]", "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "SLURM_NODEID": "1"}
    env = detect_env(slurm)
    assert int(out.stdout) == env.master_port and env.master_addr == "node1"


def test_multinode_job_exports_master_and_interface():
    """Two nodes: the master address comes from the allocation's first node, the port from the job id, and the
    local preset's interface goes to NCCL and gloo; launch.socket_ifname overrides it, launch.exclusive asks
    for whole nodes."""
    lines = rendezvous_lines(_launch("launch.nodes=2"), get_preset("local").socket_ifname)
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1' in lines[0]
    assert lines[1] == MASTER_PORT_LINE
    assert "export NCCL_SOCKET_IFNAME=eth0 GLOO_SOCKET_IFNAME=eth0" in lines
    p = executor_parameters(_launch("launch.nodes=2", "launch.socket_ifname=ib0", "launch.exclusive=true"),
                            get_preset("local"), name="x")
    assert "export NCCL_SOCKET_IFNAME=ib0 GLOO_SOCKET_IFNAME=ib0" in p["slurm_setup"]
    assert p["slurm_additional_parameters"] == {"exclusive": True}
    one_node = rendezvous_lines(_launch("launch.tasks_per_node=2"), "eth0")
    assert not any("SOCKET_IFNAME" in line for line in one_node), "one node: loopback, no interface to name"


def test_dry_run_prints_the_resolved_rendezvous(tmp_path, capsys):
    """`cjepa submit --dry-run launch.nodes=2` names the world, the master address and port rules, the backend
    and timeout, the interface and where the per-node logs go."""
    from cjepa.cli import main

    rc = main(["submit", "-c", SMOKE, "--dry-run", "--cluster", "local", f"run.out_dir={tmp_path}", "launch.nodes=2",
               "launch.tasks_per_node=2", "dist.timeout_s=90"])
    out = capsys.readouterr().out
    assert rc == 0
    for needle in ("4 ranks = 2 node(s) x 2", "first node of $SLURM_JOB_NODELIST", "20000 + job id % 20000",
                   "dist.timeout_s=90", "GLOO_SOCKET_IFNAME=eth0", "job/logs/nodes/<host>.log"):
        assert needle in out, needle
