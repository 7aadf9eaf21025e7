"""DDP really all-reduces (fixes Q10): 2 gloo processes on half batches == one process on the full batch. The
hot path adds no collective of its own between reads, and a NaN on one rank stops both at the same read."""

import json

import pytest
import torch
import torch.multiprocessing as mp

from cjepa.config import load_config
from cjepa.tasks.predictor import PredictorTask
from cjepa.trainer import NonFiniteLoss, Trainer, run_dir_of, train
from cjepa.utils.checkpoint import list_checkpoints, load_model_state
from tests.helpers import SMOKE, HostReads, dist_env_vars, free_port, set_env

pytestmark = pytest.mark.dist

OVERRIDES = ["model.dropout=0.0", "train.max_steps=4", "train.ckpt_every=4", "train.val_every=2", "data.batch_size=8"]


def _worker(rank, world, port, out_dir):
    set_env(dist_env_vars(rank, world, port))
    torch.set_num_threads(1)
    cfg = load_config([SMOKE], [f"run.out_dir={out_dir}", *OVERRIDES])
    train(cfg, progress=False)


def test_two_process_ddp_equals_single_process_on_the_doubled_batch(tmp_path):
    """After 4 AdamW steps the DDP model equals the single-process model (same global batch of 8, masks drawn
    per global sample index, gradients averaged over ranks); validation is exact over ranks too."""
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    single = load_config([SMOKE], [f"run.out_dir={tmp_path / 'single'}", *OVERRIDES])
    s = train(single, progress=False)
    a = load_model_state(run_dir_of(single))
    b = load_model_state(tmp_path / "ddp" / "smoke")
    inner = 2 * 8  # heads * head_dim of the smoke model
    for k in a:
        x, y = b[k].clone(), a[k].clone()
        if k.endswith("in_proj_bias"):
            # The key bias has an exactly-zero true gradient (softmax ignores a per-query constant); Adam turns the
            # round-off of a different summation order into steps of up to lr there, so it only gets a bound.
            assert (x[inner : 2 * inner] - y[inner : 2 * inner]).abs().max() <= 4 * 5e-4
            x[inner : 2 * inner] = y[inner : 2 * inner]
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=k)
    import json

    ddp_summary = json.loads((tmp_path / "ddp" / "smoke" / "summary.json").read_text())
    assert ddp_summary["world_size"] == 2 and ddp_summary["engine"] == "ddp"
    assert abs(ddp_summary["val/loss_future"] - s["val/loss_future"]) < 1e-5
    assert abs(ddp_summary["train/loss"] - s["train/loss"]) < 1e-5  # logged train losses are reduced over ranks


class CountedNaN(PredictorTask):
    """Labels host reads and collectives with the step being trained; rank `nan_rank` returns NaN at `nan_step`."""

    def __init__(self, cfg, counter, nan_rank=-1, nan_step=-1):
        super().__init__(cfg)
        self.counter, self.nan_rank, self.nan_step = counter, nan_rank, nan_step

    def training_losses(self, model, batch, step, micro_index):
        self.counter.label = step
        out = super().training_losses(model, batch, step, micro_index)
        if step == self.nan_step and self.env.rank == self.nan_rank:
            out["loss_future"] = out["loss_future"] * float("nan")
            out["loss"] = out["loss"] + out["loss_future"]
        return out


def _reads_worker(rank, world, port, out_dir):
    set_env(dist_env_vars(rank, world, port))
    torch.set_num_threads(1)
    common = [f"run.out_dir={out_dir}", "train.log_every=4", "train.val_every=100", "train.grad_accum=2",
              "optim.grad_clip=1.0"]
    cfg = load_config([SMOKE], [*common, "run.name=counted", "train.max_steps=9", "train.ckpt_every=100"])
    with HostReads() as counter:
        Trainer(cfg, CountedNaN(cfg, counter), progress=False).fit()
    report = {"reads": dict(counter.reads), "collectives": dict(counter.collectives), "sites": dict(counter.sites)}
    cfg = load_config([SMOKE], [*common, "run.name=nan", "train.ckpt_every=4"])
    try:
        with HostReads() as counter:
            Trainer(cfg, CountedNaN(cfg, counter, nan_rank=1, nan_step=5), progress=False).fit()
        report["nan"] = "finished"
    except NonFiniteLoss as err:
        report["nan"] = str(err)
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


def test_hot_path_adds_no_collectives_and_a_nan_on_one_rank_stops_all(tmp_path):
    """2 DDP ranks, train.log_every=4, grad_accum=2 (no_sync on the first micro-batch), clipping: between log steps
    no rank reads a device value or calls a collective of its own (DDP's gradient all-reduce runs inside its reducer);
    a log step costs one all_reduce and one read. A NaN on rank 1 at step 5 stops both ranks at the read after
    step 8, naming step 5; the step-4 checkpoint stays the last."""
    mp.spawn(_reads_worker, args=(2, free_port(), tmp_path), nprocs=2, join=True)
    for rank in (0, 1):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        reads = {int(k): v for k, v in r["reads"].items() if k != "null"}
        coll = {int(k): v for k, v in r["collectives"].items() if k != "null"}
        quiet = [s for s in range(8) if (s + 1) % 4]  # step 8 is the last: validation and the final checkpoint
        assert {s: r["sites"][str(s)] for s in quiet if reads.get(s)} == {}, rank
        assert {s: coll[s] for s in quiet if coll.get(s)} == {}, rank
        assert (reads[3], reads[7], coll[3], coll[7]) == (1, 1, 1, 1), (rank, r)
        assert "non-finite loss at step 5 (loss_future, loss" in r["nan"] and "after step 8" in r["nan"], (rank,
                                                                                                           r["nan"])
    assert [p.name for p in list_checkpoints(tmp_path / "nan")] == ["step_0000004"]
