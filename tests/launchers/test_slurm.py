"""Real SLURM (marker ``slurm``; skipped only where ``sinfo`` is absent): a job-array sweep, a requeued job that
resumes, and a 2-task DeepSpeed job, all submitted through sbatch by the launchers on the built-in data.

The jobs import cjepa from their code snapshot and train configs/smoke/cpu.yaml with 1 CPU each (the local
single-node cluster started by start-local-slurm.sh runs four such tasks at once with LOCAL_SLURM_CPUS=4).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cjepa.cli import main
from cjepa.config import load_config
from cjepa.utils.checkpoint import latest_checkpoint, list_checkpoints, load_model_state
from launchers.submit import job_result, submit
from tests.helpers import SMOKE, assert_close_verbose, wait_for

pytestmark = pytest.mark.slurm


def test_masked_slot_sweep_runs_as_a_job_array(tmp_path, capsys):
    """A 3-job masked-slot sweep goes through sbatch as one array, every job completes from the snapshot, and the
    summary table (printed at the end, and rebuilt later from disk) has one completed row per job."""
    t0 = time.time()
    rc = main(["sweep", "-c", SMOKE, "masking.num_masked=1,2,3", f"run.out_dir={tmp_path}", "--name", "mask",
               "--cluster", "local"])
    wall = time.time() - t0
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = [line for line in out.splitlines() if "COMPLETED" in line]
    assert len(rows) == 3 and all(f"masking.num_masked={m}" in r for m, r in zip((1, 2, 3), rows)), out
    record = json.loads((tmp_path / "mask" / "sweep.json").read_text())
    assert len({j["job_id"].split("_")[0] for j in record["jobs"]}) == 1, "one job array"
    summary = json.loads(Path(record["jobs"][0]["run_dir"], "summary.json").read_text())
    assert summary["steps"] == 12
    assert main(["sweep", "--summary", str(tmp_path / "mask")]) == 0
    assert capsys.readouterr().out.count("COMPLETED") == 3
    print(f"sweep of 3 jobs on the local SLURM: {wall:.1f} s wall")


@pytest.mark.slow
def test_requeued_job_resumes_and_matches_an_uninterrupted_job(tmp_path):
    """`scontrol requeue` mid-run: the job checkpoints on SIGTERM, runs again under the same id, resumes from the
    checkpoint that signal wrote (its recorded reason) at that checkpoint's step, and ends with exactly the
    parameters of the same job left alone. Dropout is on, so the dropout masks after the resume only match if the
    RNG states were restored from that checkpoint."""
    common = [SMOKE], [f"run.out_dir={tmp_path}", "train.max_steps=300", "train.ckpt_every=10", "train.val_every=1000",
                       "train.log_every=10", "train.keep_checkpoints=0", "model.dropout=0.1"]
    interrupted = submit(common[0], common[1] + ["run.name=requeued"])
    reference = submit(common[0], common[1] + ["run.name=reference"])
    ckpts = interrupted.run_dir / "checkpoints"
    wait_for(lambda: ckpts.is_dir() and any(p.name.startswith("step_") for p in ckpts.iterdir()), 240,
             "a first checkpoint")
    subprocess.run(["scontrol", "requeue", interrupted.job.job_id], check=True, timeout=30)
    result = job_result(interrupted.job)
    reference_result = job_result(reference.job)
    assert result["steps"] == reference_result["steps"] == 300
    log = Path(interrupted.job.paths.stderr).read_text()
    resumes = re.findall(r"resumed from (\S+) at step (\d+)", log)
    assert len(resumes) == 1, log[-2000:]
    resumed_from, resumed_at = Path(resumes[0][0]), int(resumes[0][1])
    assert 0 < resumed_at < 300
    meta = json.loads((resumed_from / "meta.json").read_text())
    assert meta["reason"] == f"signal {int(signal.SIGTERM)}", meta  # not a periodic checkpoint
    assert meta["step"] == resumed_at and resumed_from.name == f"step_{resumed_at:07d}"
    reasons = [json.loads((p / "meta.json").read_text())["reason"] for p in list_checkpoints(reference.run_dir)]
    assert not any(r.startswith("signal") for r in reasons), "the reference job must run uninterrupted"
    assert result["code"] == str(interrupted.job_dir / "code"), "the job must run the snapshot"
    for run in (interrupted, reference):
        assert load_config([str(latest_checkpoint(run.run_dir) / "config.yaml")]).model.dropout == 0.1
    ours = load_model_state(latest_checkpoint(interrupted.run_dir))
    theirs = load_model_state(latest_checkpoint(reference.run_dir))
    for k in theirs:
        assert_close_verbose(ours[k], theirs[k], atol=0, rtol=0, name=k)
    print(f"requeued job resumed at step {resumed_at} from its SIGTERM checkpoint")


@pytest.mark.slow
def test_two_task_job_trains_with_deepspeed_over_gloo(tmp_path):
    """tasks_per_node=2: srun starts two ranks that find each other from SLURM's variables and train with ZeRO-2
    over gloo; the checkpoint holds both ranks' shards and a plain model.pt."""
    sub = submit([SMOKE], [f"run.out_dir={tmp_path}", "run.name=ds", "launch.tasks_per_node=2", "dist.engine=deepspeed",
                           "dist.zero_stage=2"])
    results = sub.job.results()
    assert len(results) == 2
    summary = results[0]
    assert (summary["world_size"], summary["engine"], summary["steps"]) == (2, "deepspeed-zero2", 12)
    ckpt = latest_checkpoint(sub.run_dir)
    assert len(list((ckpt / "deepspeed").glob("*/*optim_states.pt"))) == 2
    from cjepa.models.predictor import build_predictor

    build_predictor(load_config([str(ckpt / "config.yaml")]).model).load_state_dict(load_model_state(ckpt), strict=True)
