"""Encoder training task with the generic trainer (cjepa/tasks/encoder.py)."""

import json
import warnings

import pytest
import torch

from cjepa.config import derive, load_config
from cjepa.data.clips import InMemoryVideos
from cjepa.distributed.env import DistEnv
from cjepa.tasks.encoder import EncoderTask
from cjepa.trainer import Trainer
from cjepa.utils.checkpoint import latest_checkpoint, load_model_state
from tests.helpers import STAND_IN_DEVICE, OnDevice, transfers_to_stand_in_device
from tests.video_helpers import TINY_SAVI as TINY_SAVI_MODEL
from tests.video_helpers import TINY_VIDEOSAUR, disc_videos

TINY_SAVI = [
    "run.device=cpu",
    *TINY_SAVI_MODEL,
    "encoder.data.clip_frames=2",
    "encoder.data.frame_stride=2",
    "encoder.data.val_clip_frames=3",
    "encoder.data.val_videos=4",
    "encoder.data.val_batch_size=2",
    "data.batch_size=4",
    "train.epochs=0",
    "train.log_every=1",
    "optim.lr=1.0e-3",
    "optim.weight_decay=0.0",
    "optim.schedule=exp_decay",
    "optim.warmup_steps=2",
    "optim.min_lr_ratio=0.5",
    "optim.grad_clip=0.05",
]


@pytest.fixture(scope="module")
def sources():
    return InMemoryVideos(disc_videos(8, 10, 16, seed=0)), InMemoryVideos(disc_videos(4, 10, 16, seed=1))


def _cfg(tmp_path, name, *extra):
    return load_config([], TINY_SAVI + [f"run.out_dir={tmp_path}", f"run.name={name}", *extra])


def test_resumed_training_equals_uninterrupted(tmp_path, sources):
    """4 steps == 2 steps + checkpoint + resume + 2 steps, bit for bit (order, flips and slot noise are seeded per
    step)."""
    train, val = sources
    common = ["encoder.data.hflip_prob=0.5", "train.val_every=2", "train.ckpt_every=2"]
    Trainer(
        _cfg(tmp_path, "full", "train.max_steps=4", *common), EncoderTask(_cfg(tmp_path, "full"), train, val),
        progress=False
    ).fit()
    Trainer(
        _cfg(tmp_path, "part", "train.max_steps=2", *common), EncoderTask(_cfg(tmp_path, "part"), train, val),
        progress=False
    ).fit()
    summary = Trainer(
        _cfg(tmp_path, "part", "train.max_steps=4", *common), EncoderTask(_cfg(tmp_path, "part"), train, val),
        progress=False
    ).fit()
    full = load_model_state(latest_checkpoint(tmp_path / "full"))
    part = load_model_state(latest_checkpoint(tmp_path / "part"))
    for k in full:
        assert torch.equal(full[k], part[k]), k
    assert summary["steps"] == 4


def test_training_logs_losses_segmentation_metrics_and_pictures(tmp_path, sources):
    """A short run logs SAVi losses, validation FG-ARI / mBO, tensorboard slot images, the held-out clip's slot
    masks over time as a tensorboard video at the validation step, and a GIF of the slots."""
    train, val = sources
    cfg = _cfg(tmp_path, "logs", "train.max_steps=2", "train.val_every=2", "encoder.vis_every=1")
    summary = Trainer(cfg, EncoderTask(cfg, train, val), progress=False).fit()
    for key in ("train/loss", "train/loss_recon", "train/loss_kld", "val/loss", "val/fg_ari", "val/fg_ari_frame",
                "val/mbo"):
        assert key in summary, key
    assert -1.0 <= summary["val/fg_ari"] <= 1.0 and 0.0 <= summary["val/mbo"] <= 1.0
    assert {"fg_ari", "mbo", "loss"} <= set(summary["final_eval"])
    gifs = sorted(p.name for p in (tmp_path / "logs" / "media").glob("*.gif"))
    assert "val_slots_step0000002.gif" in gifs and any(g.startswith("train_slots") for g in gifs)
    lines = [json.loads(x) for x in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert any("val/fg_ari" in x for x in lines)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "logs" / "tb"))
    acc.Reload()
    assert any(t.startswith("val/slots/") for t in acc.Tags()["images"])
    from tests.tensorboard_helpers import event_videos

    ((step, video),) = event_videos(tmp_path / "logs" / "tb", "val/slot_video")
    assert step == 2 and video.shape[0] == cfg.encoder.data.val_clip_frames
    assert video.shape[2] == 2 * video.shape[1]  # square frames: frame | slot overlay


def test_frozen_backbone_is_not_optimised_and_small_splits_are_refused(tmp_path, sources):
    """param_groups hold only trainable tensors (not DINOv2); a split smaller than one batch is an error."""
    train, val = sources
    cfg = load_config(
        [],
        [
            f"run.out_dir={tmp_path}",
            *TINY_VIDEOSAUR,
            "data.batch_size=4",
        ],
    )
    task = EncoderTask(cfg, train, val)
    task.setup(DistEnv(), derive(cfg, 1), torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = task.build_model()
    params = task.param_groups(model)[0]["params"]
    assert len(params) == sum(1 for n, p in model.named_parameters() if not n.startswith("backbone."))
    assert all(p.requires_grad for p in params)
    cfg.data.batch_size = 16
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EncoderTask(cfg, train, val).setup(DistEnv(), derive(cfg, 1), torch.device("cpu"))


LEARNING = [
    "run.device=cpu",
    "encoder.num_slots=5",
    "encoder.slot_dim=32",
    "encoder.savi.resolution=16",
    "encoder.savi.dec_resolution=4",
    "encoder.savi.slot_mlp=64",
    "encoder.data.clip_frames=1",
    "encoder.data.val_clip_frames=1",
    "encoder.data.val_videos=16",
    "encoder.data.val_batch_size=16",
    "data.batch_size=16",
    "optim.schedule=constant",
    "optim.grad_clip=0.0",
    "train.max_steps=400",
    "train.val_every=400",
    "train.ckpt_every=400",
    "train.log_every=50",
]


@pytest.mark.slow
def test_tiny_savi_learns_to_segment_moving_discs(tmp_path):
    """The demo-size SAVi (configs/world/savi.yaml at 16 px, 5 slots) trained 400 steps on frames of rendered moving
    discs separates the objects: validation FG-ARI rises from about 0 at init to well above it."""
    from cjepa.paths import config_path

    train = InMemoryVideos(disc_videos(64, 16, 16, seed=0, min_objects=2, max_objects=2))
    val = InMemoryVideos(disc_videos(16, 16, 16, seed=1, min_objects=2, max_objects=2))
    cfg = load_config([str(config_path("world/savi.yaml"))], [f"run.out_dir={tmp_path}", *LEARNING])
    task = EncoderTask(cfg, train, val)
    task.setup(DistEnv(), derive(cfg, 1), torch.device("cpu"))
    torch.manual_seed(cfg.run.seed)  # the trainer seeds the same way before building the model
    init = task.evaluate(task.build_model(), pictures=False)
    summary = Trainer(cfg, EncoderTask(cfg, train, val), progress=False).fit()
    final = summary["final_eval"]
    print(
        f"FG-ARI init {init['val/fg_ari']:.3f} -> trained {final['fg_ari']:.3f}; mBO {init['val/mbo']:.3f} -> "
        f"{final['mbo']:.3f}"
    )
    assert abs(init["val/fg_ari"]) < 0.15
    assert final["fg_ari"] > 0.3 and final["fg_ari"] > init["val/fg_ari"] + 0.25
    assert final["mbo"] > init["val/mbo"]


def test_conditional_savi_trains_with_cues_from_flipped_masks(tmp_path, sources):
    """encoder.savi.init=cues trains and validates with cues from the clips' first-frame masks; a flipped clip's
    masks flip with its frames; a source without masks is an error naming the setting."""
    train, val = sources
    cfg = _cfg(tmp_path, "cond", "train.max_steps=2", "train.val_every=2", "encoder.savi.init=cues",
               "encoder.data.hflip_prob=0.5")
    summary = Trainer(cfg, EncoderTask(cfg, train, val), progress=False).fit()
    assert summary["steps"] == 2 and -1.0 <= summary["val/fg_ari"] <= 1.0
    task = EncoderTask(cfg, train, val)
    task.setup(DistEnv(), derive(cfg, 1), torch.device("cpu"))
    batch = next(task.train_batches(0))[0]
    seeds = list(range(8))
    frames, masks = batch["frames"][:1].expand(8, -1, -1, -1, -1), batch["masks"][:1].expand(8, -1, -1, -1)
    f, m = task._augment(frames, seeds), task._augment(masks, seeds)
    flipped = [torch.equal(f[i], frames[i].flip(-1)) for i in range(8)]
    assert flipped == [torch.equal(m[i], masks[i].flip(-1)) for i in range(8)] and 0 < sum(flipped) < 8
    bare = InMemoryVideos({k: {"frames": v["frames"]} for k, v in disc_videos(4, 10, 16, seed=2).items()})
    task = EncoderTask(cfg, bare, bare)
    task.setup(DistEnv(), derive(cfg, 1), torch.device("cpu"))
    with pytest.raises(ValueError, match="encoder.savi.init=cues needs ground-truth instance masks"):
        task.training_losses(task.build_model(), next(task.train_batches(0))[0], 0, 0)


def test_cue_mode_training_step_reads_nothing_on_the_device(tmp_path, sources):
    """encoder.savi.init=cues: the cues come from the batch's CPU masks before the transfer, so the whole training
    step (batch preparation, flips, forward with cues, losses, backward) reads no device value on the host; only
    the frames and the (B, S, 3) cues travel. The cues are those of the flipped first-frame masks."""
    from cjepa.models.object_encoder import first_frame_cues

    train, val = sources
    cfg = _cfg(tmp_path, "reads", "encoder.savi.init=cues", "encoder.data.hflip_prob=0.5", "encoder.vis_every=0")
    task = EncoderTask(cfg, train, val)
    task.setup(DistEnv(), derive(cfg, 1), STAND_IN_DEVICE)  # the task's transfers are marked, its host work is not
    model = task.build_model()
    batch = next(task.train_batches(0))[0]
    with transfers_to_stand_in_device() as reads:
        losses = task.training_losses(model, batch, 0, 0)
        losses["loss"].backward()
        cues = task._cues(batch, task._clip_seeds(batch, 0))
    assert reads == []
    assert isinstance(losses["loss"],
                      OnDevice) and isinstance(cues, OnDevice)  # the step really ran on "device" tensors
    flipped = task._augment(batch["masks"][:, 0], task._clip_seeds(batch, 0))
    assert torch.equal(cues.as_subclass(torch.Tensor), first_frame_cues(flipped.long(), cfg.encoder.num_slots))
    with pytest.raises(ValueError, match="compute cues from the CPU masks"):
        first_frame_cues(torch.zeros(1, 4, 4, dtype=torch.long, device="meta"), 3)


def test_clip_curriculum_switches_to_long_clips_at_an_epoch_boundary(tmp_path, sources):
    """encoder.data.long_clip_frames: short clips before long_clips_from, long clips from the first epoch that
    starts there (2 steps per epoch here: step 3 is mid-epoch, so epoch 1 still has short clips), also when
    train_batches resumes mid-epoch."""
    train, val = sources
    cfg = _cfg(tmp_path, "curr", "encoder.data.long_clip_frames=4", "encoder.data.long_clips_from=3")
    task = EncoderTask(cfg, train, val)
    task.setup(DistEnv(), derive(cfg, 1), torch.device("cpu"))
    assert task.steps_per_epoch == 2
    lengths = {s: next(task.train_batches(s))[0]["frames"].shape[1] for s in (0, 1, 2, 3, 4, 5)}
    assert lengths == {0: 2, 1: 2, 2: 2, 3: 2, 4: 4, 5: 4}
    off = EncoderTask(_cfg(tmp_path, "plain"), train, val)
    off.setup(DistEnv(), derive(off.cfg, 1), torch.device("cpu"))
    assert next(off.train_batches(100))[0]["frames"].shape[1] == 2


SCHEDULE = "encoder.data.clip_schedule=[[2, 3], [5, 4]]"  # 2 steps per epoch: 3 frames from step 2, 4 from 6


def test_clip_schedule_grows_clips_phase_by_phase_at_epoch_boundaries(tmp_path, sources):
    """encoder.data.clip_schedule: 2-frame clips, 3 from step 2 (an epoch boundary), 4 from the first epoch that
    starts at or after step 5 (step 6); train_batches started mid-epoch cuts the clips of its epoch's phase."""
    train, val = sources
    task = EncoderTask(_cfg(tmp_path, "sched", SCHEDULE), train, val)
    task.setup(DistEnv(), derive(task.cfg, 1), torch.device("cpu"))
    lengths = {s: next(task.train_batches(s))[0]["frames"].shape[1] for s in range(9)}
    assert lengths == {0: 2, 1: 2, 2: 3, 3: 3, 4: 3, 5: 3, 6: 4, 7: 4, 8: 4}
    assert task.describe()["clip"] == "2x2, 3 from step 2, 4 from step 6"


def test_resume_mid_schedule_equals_uninterrupted(tmp_path, sources):
    """8 steps through three clip-length phases == 5 steps + checkpoint + resume (mid-epoch, in the 3-frame phase,
    one epoch before the 4-frame one) + 3 steps, bit for bit, and the resumed run trained the same clip lengths."""
    train, val = sources
    # a constant LR: the part run's first leg has another max_steps, which the decay schedules depend on
    common = [SCHEDULE, "encoder.savi.init=cues", "optim.schedule=constant", "train.val_every=100",
              "train.ckpt_every=100"]
    seen: dict[str, list[int]] = {"full": [], "part": []}

    def run(name, steps):
        cfg = _cfg(tmp_path, name, f"train.max_steps={steps}", *common)
        task = EncoderTask(cfg, train, val)
        plain = task.training_losses
        task.training_losses = lambda m, b, step, j: seen[name].append(b["frames"].shape[1]) or plain(m, b, step, j)
        return Trainer(cfg, task, progress=False).fit()

    run("full", 8)
    run("part", 5)
    assert run("part", 8)["steps"] == 8
    full = load_model_state(latest_checkpoint(tmp_path / "full"))
    part = load_model_state(latest_checkpoint(tmp_path / "part"))
    for k in full:
        assert torch.equal(full[k], part[k]), k
    assert seen["full"] == seen["part"] == [2, 2, 3, 3, 3, 3, 4, 4]


def test_truncated_backprop_trains_long_clips_and_pictures_show_the_trained_frames(tmp_path, sources):
    """encoder.savi.grad_frames with the long-clip curriculum: conditional SAVi trains 4-frame clips (stride 2 in
    10-frame videos) through their first and last frames, validates whole clips, and the training pictures pair
    each mask with the frame it belongs to."""
    train, val = sources
    cfg = _cfg(tmp_path, "tbptt", "train.max_steps=2", "train.val_every=2", "encoder.savi.init=cues",
               "encoder.vis_every=1",
               "encoder.data.hflip_prob=0.0", "encoder.data.long_clip_frames=4", "encoder.data.long_clips_from=0",
               "encoder.savi.grad_frames=1")
    task = EncoderTask(cfg, train, val)
    summary = Trainer(cfg, task, progress=False).fit()
    assert (
        summary["steps"] == 2
        and torch.isfinite(torch.tensor(summary["train/loss"]))
        and -1.0 <= summary["val/fg_ari"] <= 1.0
    )
    shown = []
    task._log_pictures = lambda tag, frames, masks, step: shown.append((frames, masks))
    model = task.build_model()
    batch = next(task.train_batches(0))[0]
    task.training_losses(model, batch, 0, 0)
    frames, masks = shown[0]
    assert frames.shape[1] == masks.shape[1] == 2  # frames 0 and 3 of the 4-frame clip
    assert torch.equal(frames, batch["frames"][:, [0, 3]])
