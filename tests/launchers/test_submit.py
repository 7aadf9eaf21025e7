"""The submit path without SLURM: submitit's debug executor, the job folder, the code snapshot, and the
checkpoint-and-requeue protocol of the training job (preemption -> checkpoint -> exit 3 -> resume)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import submitit

from cjepa.cli import main
from cjepa.tasks.predictor import PredictorTask
from cjepa.trainer import EXIT_PREEMPTED, Trainer
from cjepa.utils.checkpoint import latest_checkpoint, load_model_state
from launchers.job import TrainJob
from launchers.submit import resolve_config, snapshot_code, write_config
from tests.helpers import SMOKE, assert_close_verbose

SHORT = ["train.max_steps=6", "train.ckpt_every=3", "train.val_every=6", "model.dropout=0.0"]


def test_debug_executor_runs_the_job_in_process(tmp_path, capsys):
    """`cjepa submit --cluster debug --wait` trains the smoke config through submitit in this process, prints
    the training summary, and leaves the resolved config, git state and job record in the job folder."""
    rc = main(["submit", "-c", SMOKE, "--cluster", "debug", "--wait", f"run.out_dir={tmp_path}", "run.name=dbg",
               *SHORT])
    out = capsys.readouterr().out
    assert rc == 0 and "val/loss_future" in out and "job_id" in out
    run = tmp_path / "dbg"
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    job = run / "job"
    assert {"config.yaml", "git.txt", "diff.patch", "job.json", "logs"} <= {p.name for p in job.iterdir()}
    assert not (job / "code").exists(), "the debug executor runs this process's code: no snapshot"
    assert "max_steps: 6" in (job / "config.yaml").read_text()


def test_dry_run_writes_nothing(tmp_path, capsys):
    """--dry-run validates, prints the resolved config and resources, and creates no folder."""
    rc = main(["submit", "-c", SMOKE, "--dry-run", f"run.out_dir={tmp_path}", "launch.tasks_per_node=2"])
    out = capsys.readouterr().out
    assert rc == 0 and "tasks_per_node: 2" in out and "dry run" in out
    assert not any(tmp_path.iterdir())


def test_code_snapshot_holds_the_tracked_files(tmp_path):
    """The snapshot has the tracked sources and configs (as in the working tree) and no build or cache files."""
    dest = snapshot_code(tmp_path / "code")
    assert (dest / "cjepa" / "trainer.py").is_file() and (dest / "launchers" / "job.py").is_file()
    assert (dest / "configs" / "smoke" / "cpu.yaml").is_file()
    assert not list(dest.rglob("__pycache__"))
    probe = "import cjepa, cjepa_kernels.registry as r; print(cjepa.__file__); print(r.__file__)"
    env = {**os.environ, "PYTHONPATH": str(dest)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert all(Path(f).resolve().is_relative_to(dest.resolve()) for f in out.stdout.split()), \
        f"a job on PYTHONPATH={dest} must import the snapshot's cjepa and kernels: {out.stdout}"
    from cjepa.utils.run_dir import git_info

    assert git_info(dest)["sha"] == git_info()["sha"], "runs from the snapshot record the commit it was taken from"


def _stop_at_step(monkeypatch, step: int, signum):
    """Make the trainer see a stop signal at `step` (as SLURM's SIGTERM / SIGUSR1 would set it)."""
    calls = {"n": 0}

    def pending_signal(self):  # looked at once per step, after the step
        calls["n"] += 1
        if calls["n"] == step:
            self._stop_signal = signum
        return self._stop_signal

    monkeypatch.setattr(Trainer, "_pending_signal", pending_signal)


def test_preempted_job_checkpoints_exits_3_and_its_requeue_resumes(tmp_path, monkeypatch):
    """A stop signal mid-run writes a checkpoint and exits with code 3 (no result, so submitit keeps waiting);
    checkpoint() hands submitit the same call, which resumes from that checkpoint and ends with the weights of
    an uninterrupted run."""
    cfg = resolve_config([SMOKE], [f"run.out_dir={tmp_path}", "run.name=pre", *SHORT])
    job = TrainJob(str(write_config(tmp_path / "pre.yaml", cfg)))
    _stop_at_step(monkeypatch, 2, signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        job()
    assert stopped.value.code == EXIT_PREEMPTED
    ckpt = latest_checkpoint(tmp_path / "pre")
    assert ckpt.name == "step_0000002" and "signal" in json.loads((ckpt / "meta.json").read_text())["reason"]
    monkeypatch.undo()
    trained = []
    losses = PredictorTask.training_losses

    def recording(self, model, batch, step, micro_index):
        trained.append(step)
        return losses(self, model, batch, step, micro_index)

    monkeypatch.setattr(PredictorTask, "training_losses", recording)
    resubmission = job.checkpoint()
    assert isinstance(resubmission, submitit.helpers.DelayedSubmission)
    assert resubmission.result()["steps"] == 6
    assert trained == [2, 3, 4, 5], "the requeued job must continue from the step-2 checkpoint, not start over"
    monkeypatch.undo()

    ref = resolve_config([SMOKE], [f"run.out_dir={tmp_path}", "run.name=ref", *SHORT])
    TrainJob(str(write_config(tmp_path / "ref.yaml", ref)))()
    resumed, uninterrupted = load_model_state(tmp_path / "pre"), load_model_state(tmp_path / "ref")
    for k in uninterrupted:
        assert_close_verbose(resumed[k], uninterrupted[k], atol=0, rtol=0, name=k)


def test_time_limit_signal_hands_over_to_submitits_requeue(tmp_path, monkeypatch):
    """On the time-limit signal (SIGUSR1) the job, after its checkpoint, calls the handler submitit installed for
    that signal (which requeues), then exits with code 3."""
    cfg = resolve_config([SMOKE], [f"run.out_dir={tmp_path}", "run.name=tl", *SHORT])
    job = TrainJob(str(write_config(tmp_path / "tl.yaml", cfg)))
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        _stop_at_step(monkeypatch, 4, signal.SIGUSR1)
        with pytest.raises(SystemExit) as stopped:
            job()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert stopped.value.code == EXIT_PREEMPTED and seen == [signal.SIGUSR1]
    assert latest_checkpoint(tmp_path / "tl").name == "step_0000004"


def test_relative_paths_are_resolved_at_submission(tmp_path, monkeypatch):
    """The job runs inside its snapshot, so existing relative paths in path-like keys become absolute at submission;
    names and keywords stay as they are."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "slots.pkl").write_bytes(b"")
    for name in ("smoke", "cjepa", "auto"):  # folders named like values that are not paths: they must not change
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config([SMOKE],
                         ["data.source=pickle", "data.path=data/slots.pkl", "run.out_dir=out", "run.name=smoke"])
    assert cfg.data.path == str(tmp_path / "data" / "slots.pkl")
    assert cfg.run.out_dir == str(tmp_path / "out") and cfg.run.name == "smoke" and cfg.train.resume == "auto"
    assert cfg.model.layout == "cjepa"


def test_cjepa_never_imports_launchers_at_module_level():
    """The library and its CLI load without the launchers; `cjepa submit/sweep` import them only when they run."""
    import subprocess
    import sys

    code = ("import sys, importlib, cjepa.cli as c; c.build_parser(); "
            "[c.build_parser(name) for name in c.COMMANDS if name not in ('submit', 'sweep')]; "
            "[importlib.import_module(m) for m in ('cjepa.trainer', 'cjepa.distributed.deepspeed', 'cjepa.config')]; "
            "bad = [m for m in sys.modules if m == 'launchers' or m.startswith('launchers.')]; "
            "assert not bad, bad; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
