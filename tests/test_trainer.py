"""Contracts of the trainer: loss falls, resume == uninterrupted (bit-equal on CPU) and starts at the checkpoint,
NaN stops keep the last good checkpoint, SIGTERM / Ctrl-C checkpoint then exit, run directories hold what they
promise and hold one run (lock, resume rules, each step logged once, corrupt checkpoints skipped)."""

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from cjepa.config import load_config
from cjepa.distributed.engine import lr_lambda
from cjepa.tasks.predictor import PredictorTask
from cjepa.trainer import Interrupted, NonFiniteLoss, Trainer, run_dir_of, train
from cjepa.utils.checkpoint import latest_checkpoint, list_checkpoints, load_model_state
from cjepa.utils.run_dir import RunDirError
from tests.helpers import REPO, SMOKE, HostReads


def smoke(tmp_path, *extra):
    return load_config([SMOKE], [f"run.out_dir={tmp_path}", *extra])


class Interrupt(Exception):
    pass


class CrashAt(PredictorTask):
    """Raises (a crash) or returns NaN (a blow-up) at a given step."""

    def __init__(self, cfg, step, mode):
        super().__init__(cfg)
        self.at, self.mode = step, mode

    def training_losses(self, model, batch, step, micro_index):
        out = super().training_losses(model, batch, step, micro_index)
        if step == self.at:
            if self.mode == "crash":
                raise Interrupt()
            out["loss_future"] = out["loss_future"] * float("nan")
            out["loss"] = out["loss"] + out["loss_future"]
        return out


class Counted(PredictorTask):
    """Records the steps it trains (one entry per optimizer step)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.steps = []

    def training_losses(self, model, batch, step, micro_index):
        if micro_index == 0:
            self.steps.append(step)
        return super().training_losses(model, batch, step, micro_index)


def logged_steps(run_dir, key="train/loss"):
    return [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if key in r]


def test_run_dir_contents_and_loss_falls(tmp_path):
    """A run writes config.yaml, git.txt, env.txt, tb events, metrics.jsonl, checkpoints and summary.json; the
    training loss falls."""
    cfg = smoke(tmp_path, "train.max_steps=40", "train.log_every=5", "optim.lr=2e-3", "model.dropout=0.0")
    summary = train(cfg, progress=False)
    rd = run_dir_of(cfg)
    for f in ("config.yaml", "git.txt", "env.txt", "metrics.jsonl", "summary.json"):
        assert (rd / f).is_file(), f
    assert any((rd / "tb").iterdir())
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert losses[-1] < 0.7 * losses[0], losses
    assert summary["steps"] == 40 and "val/loss_future" in summary
    ck = latest_checkpoint(rd)
    assert {p.name for p in ck.iterdir()} >= {"model.pt", "train_state.pt", "config.yaml", "meta.json"}
    torch.load(ck / "model.pt", weights_only=True)
    torch.load(ck / "train_state.pt", weights_only=True)
    assert len(list_checkpoints(rd)) <= cfg.train.keep_checkpoints


@pytest.mark.parametrize("extra",
                         [(),
                          ("train.grad_accum=2", "masking.num_masked_max=4", "optim.schedule=cosine",
                           "optim.warmup_steps=3", "optim.grad_clip=0.5")])
def test_resume_is_bit_identical_to_uninterrupted(tmp_path, extra):
    """Crash at step 8 (last checkpoint at 6, mid-epoch), resume, finish at 12: every parameter is bit-equal
    to an uninterrupted run (dropout on, masks resampled, RNG and data position restored)."""
    full = smoke(tmp_path / "a", *extra)
    train(full, progress=False)
    part = smoke(tmp_path / "b", *extra)
    with pytest.raises(Interrupt):
        Trainer(part, CrashAt(part, 8, "crash"), progress=False).fit()
    assert latest_checkpoint(run_dir_of(part)).name == "step_0000006"
    resumed = Counted(part)
    Trainer(part, resumed, progress=False).fit()
    assert resumed.steps == list(range(6, 12)), "the resumed run must start at the checkpoint, not at step 0"
    assert logged_steps(run_dir_of(part)) == list(range(2, 13, 2)), "each step is logged once"
    a, b = load_model_state(run_dir_of(full)), load_model_state(run_dir_of(part))
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    """A non-finite loss stops the run before the optimizer step with a message naming the step and loss;
    the checkpoint from before stays untouched and nothing later is written."""
    cfg = smoke(tmp_path)
    with pytest.raises(NonFiniteLoss, match=r"step 9 \(loss_future, loss"):
        Trainer(cfg, CrashAt(cfg, 9, "nan"), progress=False).fit()
    rd = run_dir_of(cfg)
    assert [p.name for p in list_checkpoints(rd)] == ["step_0000006"]
    state = load_model_state(rd)
    assert all(torch.isfinite(v).all() for v in state.values())


def test_nan_between_reads_stops_at_the_next_read_and_keeps_the_last_good_checkpoint(tmp_path):
    """With train.log_every=4 the losses reach the host every 4 steps: a NaN at step 5 (not a log step) is reported
    at the read after step 8 with its own step and loss names; the step-4 checkpoint stays the last, and finite."""
    cfg = smoke(tmp_path, "train.log_every=4", "train.ckpt_every=4", "train.val_every=100")
    with pytest.raises(NonFiniteLoss,
                       match=r"step 5 \(loss_future, loss; values loss_future=nan, loss=nan\) on some rank; "
                       r"found at the check after step 8") as err:
        Trainer(cfg, CrashAt(cfg, 5, "nan"), progress=False).fit()
    rd = run_dir_of(cfg)
    assert "Last good checkpoint: " + str(rd / "checkpoints" / "step_0000004") in str(err.value)
    assert [p.name for p in list_checkpoints(rd)] == ["step_0000004"]
    assert all(torch.isfinite(v).all() for v in load_model_state(rd).values())


def test_no_checkpoint_is_written_after_an_unread_nan(tmp_path):
    """Checkpoints every 3 steps, reads every 4: the checkpoint at step 6 follows a NaN at step 4 that no log read
    has seen yet. The read that precedes every checkpoint stops the run there, so step 3 stays the last checkpoint
    and no checkpoint holds non-finite weights."""
    cfg = smoke(tmp_path, "train.log_every=4", "train.ckpt_every=3", "train.val_every=100", "train.keep_checkpoints=0")
    with pytest.raises(NonFiniteLoss, match=r"step 4 \(loss_future, loss.*found at the check after step 6"):
        Trainer(cfg, CrashAt(cfg, 4, "nan"), progress=False).fit()
    rd = run_dir_of(cfg)
    assert [p.name for p in list_checkpoints(rd)] == ["step_0000003"]
    for ck in list_checkpoints(rd):
        assert all(torch.isfinite(v).all() for v in load_model_state(ck).values()), ck


class CountedSteps(PredictorTask):
    """Labels the host reads of a HostReads counter with the step being trained."""

    def __init__(self, cfg, counter):
        super().__init__(cfg)
        self.counter = counter

    def training_losses(self, model, batch, step, micro_index):
        self.counter.label = step
        return super().training_losses(model, batch, step, micro_index)


def test_steps_between_log_steps_make_no_host_reads(tmp_path):
    """The hot path never reads a device value on the host: with train.log_every=4, grad_accum=2 and clipping, the
    steps between log steps make no read at all (no float(loss), no bool(isfinite), no float(grad_norm)), and a
    log step makes exactly one (losses, finiteness and grad norm in one copy)."""
    cfg = smoke(tmp_path, "train.max_steps=9", "train.log_every=4", "train.val_every=100", "train.ckpt_every=100",
                "train.grad_accum=2", "optim.grad_clip=1.0")
    with HostReads() as counter:
        summary = Trainer(cfg, CountedSteps(cfg, counter), progress=False).fit()
    assert summary["steps"] == 9 and "train/grad_norm" in summary
    quiet = [s for s in range(9) if (s + 1) % 4 and s != 8]  # step index s ends with the step count s + 1
    assert {s: counter.sites[s] for s in quiet if counter.reads[s]} == {}
    assert counter.reads[3] == 1 and counter.reads[7] == 1, (counter.sites[3], counter.sites[7])


def test_sigterm_saves_a_checkpoint_then_exits(tmp_path):
    """SIGTERM mid-run: the process writes a checkpoint at the current step and exits with code 3; running the
    same command again resumes from it."""
    cmd = [sys.executable, "-m", "cjepa.cli", "train", "-c", SMOKE, f"run.out_dir={tmp_path}", "train.max_steps=100000",
           "train.ckpt_every=100000", "train.val_every=100000", "train.log_every=1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "smoke" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    ck = latest_checkpoint(tmp_path / "smoke")
    meta = json.loads((ck / "meta.json").read_text())
    assert meta["reason"] == f"signal {int(signal.SIGTERM)}" and meta["step"] >= 3
    resumed = subprocess.run(cmd[:-5] + [f"train.max_steps={meta['step'] + 2}", "--no-progress"], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {ck}" in resumed.stderr


def test_pusht_predictor_trains_from_a_slot_store(tmp_path):
    """The auxiliary-node variant trains end to end from a store with proprio/action extras, logs the proprio
    loss, and evaluates rollouts with the executed actions fed back in."""
    import numpy as np

    from cjepa.data.slot_store import SlotStoreWriter

    g = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        with SlotStoreWriter(tmp_path / "store", split, num_slots=2, slot_dim=16) as w:
            for i in range(n):
                T = 40
                w.add(f"{i}_pixels.mp4", g.normal(size=(T, 2, 16)).astype(np.float32),
                      proprio=g.normal(size=(T, 4)), action=g.normal(size=(T, 2)))
    cfg = load_config([str(REPO / "configs/pusht/predictor.yaml")], [
        f"run.out_dir={tmp_path}", "run.device=cpu", f"data.path={tmp_path / 'store'}", "model.num_slots=2",
        "model.slot_dim=16",
        "model.depth=1", "model.heads=2", "model.mlp_dim=32", "data.batch_size=8", "train.max_steps=4",
        "train.log_every=2",
        "data.num_workers=0", "rollout.eval_chains=2",
    ])
    s = train(cfg, progress=False)
    assert "train/loss_proprio" in s and len(s["final_eval"]["mse"]) == 2


def test_missing_data_path_is_a_clear_error(tmp_path):
    """A pickle source without a path, or a missing file, fails before training with the reason."""
    from cjepa.config import ConfigError
    from cjepa.data.slot_store import SlotStoreError

    with pytest.raises(ConfigError, match="needs data.path"):
        train(smoke(tmp_path, "data.source=pickle"), progress=False)
    with pytest.raises(SlotStoreError, match="slot pickle not found"):
        train(smoke(tmp_path, "data.source=pickle", f"data.path={tmp_path}/none.pkl"), progress=False)
    # nothing was written, so no run directory is left (a rerun with the path fixed starts as if none had failed)
    assert not run_dir_of(smoke(tmp_path)).exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_cli_config_error_exit_code(tmp_path):
    """The CLI turns config errors into exit code 2 and a one-line message."""
    r = subprocess.run([sys.executable, "-m", "cjepa.cli", "train", "-c", SMOKE, "optim.lrr=1"], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "did you mean 'optim.lr'" in r.stderr


def _train_cmd(tmp_path, *extra):
    return [sys.executable, "-m", "cjepa.cli", "train", "-c", SMOKE, f"run.out_dir={tmp_path}", *extra, "--no-progress"]


def _wait_for_rows(path, n, proc):
    deadline = time.time() + 120
    while (
        time.time() < deadline
        and proc.poll() is None
        and not (path.exists() and len(path.read_text().splitlines()) >= n)
    ):
        time.sleep(0.2)


def test_ctrl_c_checkpoints_exits_130_in_one_line_and_resumes(tmp_path):
    """Ctrl-C mid-run (SIGINT to the whole process group, as a terminal sends it, data loader workers included) is
    handled like SIGTERM: a checkpoint at the current step, then one line (no traceback) and exit code 130. The
    same command resumes from it: the first step it trains and logs is the one after it. While the first process
    runs, a second one into the same run directory fails at once, naming the first."""
    cmd = _train_cmd(tmp_path, "train.max_steps=100000", "train.ckpt_every=100000", "train.val_every=100000",
                     "train.log_every=1",
                     "data.num_workers=2")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    metrics = tmp_path / "smoke" / "metrics.jsonl"
    _wait_for_rows(metrics, 3, proc)
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)  # the same run, started twice
    assert (
        second.returncode == 2
        and f"is in use by another run (pid {proc.pid} on host {socket.gethostname()}" in second.stderr
    ), second.stderr
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    ck = latest_checkpoint(tmp_path / "smoke")
    meta = json.loads((ck / "meta.json").read_text())
    assert meta["reason"] == f"signal {int(signal.SIGINT)}" and meta["step"] >= 3
    assert "Traceback" not in err, err
    assert (
        err.strip().splitlines()[-1]
        == f"cjepa train: interrupted (checkpoint {ck} at step {meta['step']}; the same command resumes from it)"
    )
    t_resume = time.time()
    resumed = subprocess.run(_train_cmd(tmp_path, f"train.max_steps={meta['step'] + 2}", "train.ckpt_every=100000",
                                        "train.val_every=100000", "train.log_every=1"), cwd=REPO, capture_output=True,
                                        text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {ck} at step {meta['step']}" in resumed.stderr
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    new = [r["step"] for r in rows if "train/loss" in r and r["time"] >= t_resume]
    assert new == [meta["step"] + 1, meta["step"] + 2]
    assert logged_steps(tmp_path / "smoke") == list(range(1, meta["step"] + 3))


def test_second_ctrl_c_stops_at_once(tmp_path):
    """The first Ctrl-C asks for a checkpoint at the end of the step; a second one raises at once."""
    cfg = smoke(tmp_path)
    t = Trainer(cfg, PredictorTask(cfg), progress=False)
    t._on_signal(signal.SIGINT, None)
    assert t._pending_signal() == signal.SIGINT
    with pytest.raises(KeyboardInterrupt, match="second Ctrl-C"):
        t._on_signal(signal.SIGINT, None)


def test_resume_never_refuses_a_run_dir_with_checkpoints(tmp_path):
    """train.resume=never over a run directory with checkpoints is refused before anything is written (its
    checkpoints would outrank the new run's in pruning); over one without checkpoints it starts over cleanly."""
    cfg = smoke(tmp_path, "train.max_steps=6")
    train(cfg, progress=False)
    rd = run_dir_of(cfg)
    summary = (rd / "summary.json").read_text()
    with pytest.raises(RunDirError,
                       match=r"train.resume=never, but .* holds later checkpoints of an earlier run \(step_0000006\)"):
        train(smoke(tmp_path, "train.max_steps=4", "train.resume=never", "train.ckpt_every=2"), progress=False)
    assert [p.name for p in list_checkpoints(rd)] == ["step_0000006"] and (rd / "summary.json").read_text() == summary
    (rd / "checkpoints").rename(tmp_path / "old_checkpoints")
    s = train(smoke(tmp_path, "train.max_steps=4", "train.resume=never", "train.ckpt_every=2"), progress=False)
    assert s["checkpoint"] == str(rd / "checkpoints" / "step_0000004")
    assert logged_steps(rd) == [2, 4], "the earlier run's rows are gone"


def test_resume_with_a_changed_config_is_refused_unless_allowed(tmp_path):
    """Resuming with other model/optimizer values is refused with the changed keys listed, before config.yaml is
    rewritten; resumable keys (max_steps) may change; train.allow_config_change=true resumes anyway (a checkpoint
    that does not fit the changed model is one clear error, still before anything is written). Every start is
    kept in config_history.jsonl."""
    cfg = smoke(tmp_path, "train.max_steps=6")
    train(cfg, progress=False)
    rd = run_dir_of(cfg)
    before = {f: (rd / f).read_text() for f in ("config.yaml", "git.txt", "env.txt")}
    for changed, shown in ((("optim.lr=0.002",), r"optim.lr: 0.0005 -> 0.002"),
                           (("model.slot_dim=32",), r"model.slot_dim: 16 -> 32; model.head_dim: 8 -> 16")):
        with pytest.raises(RunDirError, match=shown + r"\. On resume only run.name, .*train.max_steps"):
            train(smoke(tmp_path, "train.max_steps=9", *changed), progress=False)
        assert {f: (rd / f).read_text() for f in before} == before
    with pytest.raises(
        RunDirError,
        match=r"step_0000006 does not fit this config, changed since it was written \(model.slot_dim, model.head_dim, "
        r"train.max_steps, train.allow_config_change\): Error\(s\) in loading state_dict",
    ):
        train(smoke(tmp_path, "train.max_steps=9", "model.slot_dim=32", "train.allow_config_change=true"),
              progress=False)
    assert {f: (rd / f).read_text() for f in before} == before
    more = smoke(tmp_path, "train.max_steps=9", "train.log_every=3")
    Trainer(more, resumed := Counted(more), progress=False).fit()
    assert resumed.steps == [6, 7, 8]
    Trainer(c := smoke(tmp_path, "train.max_steps=10", "optim.lr=0.002", "train.allow_config_change=true"), Counted(c),
            progress=False).fit()
    # the changed learning rate is the one trained with (the checkpoint's optimizer holds the old one), on the
    # schedule's multiplier of each step
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    lr_at = {r["step"]: r["train/lr"] for r in rows if "train/lr" in r}
    multiplier = lr_lambda(c.optim.schedule, c.optim.warmup_steps, 10, c.optim.min_lr_ratio)
    assert lr_at[10] == pytest.approx(0.002 * multiplier(9)) and lr_at[6] == pytest.approx(0.0005 * multiplier(5))
    history = [json.loads(line) for line in (rd / "config_history.jsonl").read_text().splitlines()]
    assert [(h["step"],
             h["checkpoint"] and h["checkpoint"][-12:]) for h in history] == [(0, None), (6, "step_0000006"),
                                                                              (9, "step_0000009")]
    assert history[1]["changed"] == {"train.max_steps": [6, 9], "train.log_every": [2, 3]}
    assert history[2]["changed"]["optim.lr"] == [0.0005, 0.002] and history[2]["config"]["optim"]["lr"] == 0.002
    assert all(h["git"]["sha"] and h["versions"]["torch"] for h in history)


def test_a_run_dir_has_one_holder(tmp_path):
    """A second process training into a run directory in use fails at once, naming the holder's pid and host,
    and writes nothing there; once the holder has died (killed: no clean-up), the directory can be used again,
    as by a SLURM requeue."""
    rd = tmp_path / "smoke"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cjepa.utils.run_dir import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)", str(rd)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError,
                           match=rf"is in use by another run \(pid {holder.pid} on host {socket.gethostname()} since"):
            train(smoke(tmp_path, "train.max_steps=2"), progress=False)
        assert sorted(p.name for p in rd.iterdir()) == ["run.lock"]
    finally:
        holder.kill()
        holder.wait()
    s = train(smoke(tmp_path, "train.max_steps=2"), progress=False)
    assert s["steps"] == 2


def test_resume_and_rerun_log_each_step_once_and_keep_the_summary(tmp_path):
    """After a crash and resume, metrics.jsonl and tensorboard hold each step once; rerunning the finished run
    trains nothing and leaves summary.json with the same metrics and the same rows."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = smoke(tmp_path, "train.log_every=1")
    with pytest.raises(Interrupt):
        Trainer(cfg, CrashAt(cfg, 8, "crash"), progress=False).fit()
    rd = run_dir_of(cfg)
    assert logged_steps(rd) == list(range(1, 9))  # steps 7 and 8 were logged, then lost with the crash
    train(cfg, progress=False)
    assert logged_steps(rd) == list(range(1, 13)) and logged_steps(rd, "val/loss_future") == [6, 12]
    tb = EventAccumulator(str(rd / "tb"))
    tb.Reload()
    assert [e.step for e in tb.Scalars("train/loss")] == list(range(1, 13))
    summary, rows = json.loads((rd / "summary.json").read_text()), (rd / "metrics.jsonl").read_text()
    rerun = Counted(cfg)
    Trainer(cfg, rerun, progress=False).fit()
    again = json.loads((rd / "summary.json").read_text())
    assert rerun.steps == [] and (rd / "metrics.jsonl").read_text() == rows
    assert {k: v for k,
            v in again.items() if k != "wall_time_s"} == {k: v for k, v in summary.items() if k != "wall_time_s"}


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    """An unreadable latest checkpoint (a damaged train_state.pt) does not stop auto-resume: it is set aside with a
    warning naming the file, training resumes from the previous checkpoint, and new checkpoints replace it."""
    cfg = smoke(tmp_path, "train.max_steps=9", "train.ckpt_every=3")
    train(cfg, progress=False)
    rd = run_dir_of(cfg)
    bad = rd / "checkpoints" / "step_0000009" / "train_state.pt"
    bad.write_bytes(bad.read_bytes()[:100])
    more = smoke(tmp_path, "train.max_steps=12", "train.ckpt_every=3")
    resumed = Counted(more)
    summary = Trainer(more, resumed, progress=False).fit()
    assert resumed.steps == list(range(6, 12))
    assert f"warning: {bad} is truncated or corrupt" in capsys.readouterr().err
    assert (rd / "checkpoints" / "corrupt-step_0000009" / "train_state.pt").is_file()
    assert [p.name for p in list_checkpoints(rd)] == ["step_0000009", "step_0000012"]
    assert summary["checkpoint"] == str(rd / "checkpoints" / "step_0000012")


class CtrlCInFinalEval(PredictorTask):
    def final_eval(self, model):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the signal is handled here, at the latest when the sleep returns
        return super().final_eval(model)


def test_ctrl_c_after_the_last_step_interrupts_the_final_evaluation(tmp_path):
    """Once the loop is over nothing looks at the stop flag: a Ctrl-C during the final evaluation interrupts it
    at once, instead of being noted and ignored until the evaluation ends."""
    cfg = smoke(tmp_path, "train.max_steps=2")
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, CtrlCInFinalEval(cfg), progress=False).fit()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("key", ["rollout.eval_videos", "rollout.eval_chains"])
def test_zero_rollout_evaluation_skips_it_and_finishes(tmp_path, key):
    """rollout.eval_videos=0 (or eval_chains=0) skips the final rollout evaluation: the run finishes with its
    final checkpoint and says why the summary has no rollout curve; a negative count is a config error."""
    s = train(smoke(tmp_path, f"{key}=0"), progress=False)
    assert s["final_eval"] == {"note": f"skipped: {key}=0"} and "mse" not in s["final_eval"]
    assert (
        json.loads((run_dir_of(smoke(tmp_path)) / "summary.json").read_text())["final_eval"]["note"]
        == f"skipped: {key}=0"
    )
    from cjepa.config import ConfigError

    with pytest.raises(ConfigError, match="must be >= 0"):
        smoke(tmp_path, f"{key}=-1")


def test_the_trainer_asks_no_task_or_engine_what_it_can_do():
    """Tasks and engines declare their whole contract (cjepa.tasks.base.Task, cjepa.distributed.engine.Engine): the
    trainer calls it, it never probes for optional parts."""
    assert "hasattr(" not in (REPO / "cjepa" / "trainer.py").read_text()


class Closing(PredictorTask):
    """Counts close() calls; at step ``at`` ends the run the way ``how`` says (or never)."""

    def __init__(self, cfg, how, at=2):
        super().__init__(cfg)
        self.how, self.at, self.closed = how, at, 0

    def training_losses(self, model, batch, step, micro_index):
        out = super().training_losses(model, batch, step, micro_index)
        if step == self.at and self.how == "crash":
            raise Interrupt()
        if step == self.at and self.how == "nan":
            out["loss"] = out["loss"] * float("nan")
        if step == self.at and self.how == "ctrl_c":
            os.kill(os.getpid(), signal.SIGINT)
        return out

    def close(self):
        self.closed += 1
        super().close()


@pytest.mark.parametrize("how, raised",
                         [("end", None), ("crash", Interrupt), ("nan", NonFiniteLoss), ("ctrl_c", Interrupted)])
def test_the_task_is_closed_however_the_run_ends(tmp_path, how, raised):
    """Normal end, an exception in a step, a NaN stop, Ctrl-C: the trainer closes the task once, and the training
    loader's worker processes are gone before fit() returns or raises."""
    cfg = smoke(tmp_path, "train.max_steps=4", "train.log_every=1", "data.num_workers=1", "rollout.eval_videos=0")
    task = Closing(cfg, how)
    if raised is None:
        Trainer(cfg, task, progress=False).fit()
    else:
        with pytest.raises(raised):
            Trainer(cfg, task, progress=False).fit()
    assert task.closed == 1
    assert multiprocessing.active_children() == []
