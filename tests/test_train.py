"""Contracts of the trainer: loss falls, resume == uninterrupted (bit-equal on CPU), NaN stops keep the last good
checkpoint, SIGTERM checkpoints then exits, run directories hold what they promise."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from cjepa.config import load_config
from cjepa.tasks.predictor import PredictorTask
from cjepa.train import NonFiniteLoss, Trainer, run_dir_of, train
from cjepa.utils.checkpoint import latest_checkpoint, list_checkpoints, load_model_state
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


@pytest.mark.parametrize("extra", [(), ("train.grad_accum=2", "masking.num_masked_max=4", "optim.schedule=cosine", "optim.warmup_steps=3", "optim.grad_clip=0.5")])
def test_resume_is_bit_identical_to_uninterrupted(tmp_path, extra):
    """Crash at step 8 (last checkpoint at 6, mid-epoch), resume, finish at 12: every parameter is bit-equal
    to an uninterrupted run (dropout on, masks resampled, RNG and data position restored)."""
    full = smoke(tmp_path / "a", *extra)
    train(full, progress=False)
    part = smoke(tmp_path / "b", *extra)
    with pytest.raises(Interrupt):
        Trainer(part, CrashAt(part, 8, "crash"), progress=False).fit()
    assert latest_checkpoint(run_dir_of(part)).name == "step_0000006"
    train(part, progress=False)
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
    with pytest.raises(NonFiniteLoss, match=r"step 5 \(loss_future, loss; values loss_future=nan, loss=nan\) on some rank; "
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
    resumed = subprocess.run(cmd[:-5] + [f"train.max_steps={meta['step'] + 2}", "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=120)
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
        f"run.out_dir={tmp_path}", "run.device=cpu", f"data.path={tmp_path / 'store'}", "model.num_slots=2", "model.slot_dim=16",
        "model.depth=1", "model.heads=2", "model.mlp_dim=32", "data.batch_size=8", "train.max_steps=4", "train.log_every=2",
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


def test_cli_config_error_exit_code(tmp_path):
    """The CLI turns config errors into exit code 2 and a one-line message."""
    r = subprocess.run([sys.executable, "-m", "cjepa.cli", "train", "-c", SMOKE, "optim.lrr=1"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "did you mean 'optim.lr'" in r.stderr
