"""Encoder training under DDP (cjepa/tasks/encoder.py with cjepa.trainer): 2 gloo ranks == 1 process."""

import pytest
import torch
import torch.multiprocessing as mp

from cjepa.config import load_config
from cjepa.utils.checkpoint import latest_checkpoint, load_model_state
from tests.helpers import dist_env_vars, free_port, set_env
from tests.video_helpers import TINY_SAVI

pytestmark = pytest.mark.dist

OVERRIDES = [
    "run.device=cpu",
    "run.name=enc",
    *TINY_SAVI,
    "encoder.data.clip_frames=2",
    "encoder.data.hflip_prob=0.5",
    "encoder.data.val_clip_frames=2",
    "encoder.data.val_videos=4",
    "encoder.data.val_batch_size=1",
    "data.batch_size=4",
    "train.epochs=0",
    "train.max_steps=3",
    "train.val_every=3",
    "train.ckpt_every=3",
    "optim.lr=1.0e-3",
    "optim.weight_decay=0.0",
    "optim.grad_clip=0.05",
]


def _run(out_dir):
    from cjepa.data.clips import InMemoryVideos
    from cjepa.tasks.encoder import EncoderTask
    from cjepa.trainer import Trainer
    from tests.video_helpers import disc_videos

    torch.set_num_threads(1)
    cfg = load_config([], [f"run.out_dir={out_dir}", *OVERRIDES])
    train, val = InMemoryVideos(disc_videos(8, 6, 16, seed=0)), InMemoryVideos(disc_videos(4, 6, 16, seed=1))
    return Trainer(cfg, EncoderTask(cfg, train, val), progress=False).fit()


def _worker(rank, world, port, out_dir):
    set_env(dist_env_vars(rank, world, port))
    _run(out_dir)
    from cjepa.distributed.env import destroy_process_group

    destroy_process_group()


def test_two_rank_ddp_equals_one_process(tmp_path):
    """Per-clip seeds (flip, slot noise) and rank-sliced global batches: DDP's weights and validation match one
    process."""
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    single = _run(tmp_path / "single")
    a = load_model_state(latest_checkpoint(tmp_path / "single" / "enc"))
    b = load_model_state(latest_checkpoint(tmp_path / "ddp" / "enc"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    import json

    ddp = json.loads((tmp_path / "ddp" / "enc" / "summary.json").read_text())
    assert ddp["world_size"] == 2 and ddp["engine"] == "ddp"
    assert abs(ddp["val/loss"] - single["val/loss"]) < 1e-4
    assert abs(ddp["val/fg_ari"] - single["val/fg_ari"]) < 1e-6
