"""Streaming pretraining (`cjepa pretrain`): raw video shards -> frozen encoder -> predictor, with no slot files;
resumable mid-epoch (the decoder's position is in the checkpoint); reports the decode/encode/predictor split."""

import multiprocessing

import pytest
import torch

from cjepa.config import ConfigError, load_config
from cjepa.trainer import Trainer, build_task, run_dir_of, train
from cjepa.utils.checkpoint import latest_checkpoint, load_model_state
from tests.helpers import REPO

PRETRAIN = str(REPO / "configs" / "smoke" / "pretrain.yaml")
ENCODER = str(REPO / "configs" / "smoke" / "encoder.yaml")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small world split (train 8, val 2 videos of 24 frames at 32x32) and a smoke SAVi trained on it."""
    from cjepa.config import WorldConfig
    from cjepa.data.world.generate import generate_split

    root = tmp_path_factory.mktemp("pretrain_world")
    wc = WorldConfig(height=32, width=32, num_frames=24, future_frames=8, min_objects=2, max_objects=3, shard_size=4,
                     seed=1)
    generate_split(wc, "train", 8, root / "shards", workers=1, progress=False)
    generate_split(wc, "val", 2, root / "shards", workers=1, progress=False)
    enc = load_config([ENCODER], [f"run.out_dir={root}", f"encoder.data.path={root / 'shards'}", "train.max_steps=2"])
    train(enc, progress=False)
    return root


def cfg_for(world, out, *extra):
    return load_config([PRETRAIN], [f"run.out_dir={out}", f"data.shards={world / 'shards'}",
                                    f"encoder.checkpoint={world / 'smoke_encoder'}", *extra])


class Crash(Exception):
    pass


def crash_at(task, crash_step: int):
    """The task, made to raise :class:`Crash` when the trainer asks for the losses of step ``crash_step``."""
    orig = task.training_losses

    def crashing(model, batch, step, micro_index):
        if step == crash_step:
            raise Crash()
        return orig(model, batch, step, micro_index)

    task.training_losses = crashing
    return task


def test_pretrain_runs_and_reports_the_time_split(world, tmp_path):
    """A pretraining run trains the predictor on encoded clips, validates, rolls out, and splits its time."""
    s = train(cfg_for(world, tmp_path), progress=False)
    assert s["steps"] == 6 and s["val/loss_future"] > 0
    fe = s["final_eval"]
    assert set(fe["time_split"]) == {"decode_s", "encode_s", "predictor_s"}
    assert abs(sum(fe["time_split"].values()) - 1.0) < 1e-6
    assert len(fe["mse"]) == 2  # eval_chains * pred_frames
    state = load_model_state(run_dir_of(cfg_for(world, tmp_path)))
    assert not any(k.startswith(("cnn", "grouper")) for k in state)  # the frozen encoder is not part of the model


def test_pretrain_resumes_mid_epoch_bit_identically(world, tmp_path):
    """Crash after the step-3 checkpoint (mid-epoch: 2 steps per epoch), resume, finish: the predictor equals
    an uninterrupted run, because the decoder position and every RNG come back."""
    full = cfg_for(world, tmp_path / "a", "train.ckpt_every=3")
    train(full, progress=False)
    part = cfg_for(world, tmp_path / "b", "train.ckpt_every=3")
    task = crash_at(build_task(part), 4)
    with pytest.raises(Crash):
        Trainer(part, task, progress=False).fit()
    assert latest_checkpoint(run_dir_of(part)).name == "step_0000003"
    train(part, progress=False)
    a, b = load_model_state(run_dir_of(full)), load_model_state(run_dir_of(part))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("crash", [False, True])
def test_the_training_clip_loader_stops_its_workers_when_the_run_ends(world, tmp_path, crash):
    """The clip loader lives across epochs (its position is resumable), so nothing ends its worker processes but
    the task's close(), which the trainer calls after the last step and after a crash alike."""
    cfg = cfg_for(world, tmp_path, "data.num_workers=1", "train.max_steps=2")
    task = build_task(cfg)
    if crash:
        crash_at(task, 1)
        with pytest.raises(Crash):
            Trainer(cfg, task, progress=False).fit()
    else:
        Trainer(cfg, task, progress=False).fit()
    assert multiprocessing.active_children() == []


def test_pretrain_decodes_no_masks(world, tmp_path):
    """The frozen encoder runs without cues, so the clips it gets carry no masks: decoding them would cost a
    Python step in the DALI pipeline (and time in the CPU one) for nothing."""
    task = build_task(cfg_for(world, tmp_path, "data.with_masks=true"))
    assert task._data_cfg(2).with_masks is False


def test_pretrain_config_errors():
    """Mismatched encoder/predictor slots and the Push-T kind are refused with the keys named."""
    with pytest.raises(ConfigError, match="must match the predictor's model.num_slots"):
        build_task(load_config([PRETRAIN], ["model.num_slots=5"]))
    with pytest.raises(ConfigError, match="model.kind=slots"):
        build_task(load_config([PRETRAIN], ["model.kind=pusht"]))


def test_validation_closes_its_dali_loader_after_the_pass_and_after_an_error(world, tmp_path, monkeypatch):
    """Every validation builds a DALI loader and closes it before returning (pipeline shut down, temporary indexes
    gone),
    whether the pass ends, the window limit stops it early (data.val_max_windows=1), or the encoder fails mid-pass."""
    pytest.importorskip("nvidia.dali")
    import weakref

    import cjepa.tasks.pretrain as pretrain

    built = []

    def recording(*a, **kw):
        loader = pretrain.build_clip_loader.__wrapped__(*a, **kw)
        if not kw.get("train", True):
            built.append(loader)
        return loader

    recording.__wrapped__ = pretrain.build_clip_loader
    monkeypatch.setattr(pretrain, "build_clip_loader", recording)
    pipes = []

    for limit in (0, 1):
        cfg = cfg_for(world, tmp_path / f"l{limit}", "data.decoder=dali", "data.dali_decode=pyav", "train.max_steps=2",
                      "train.val_every=1",
                      f"data.val_max_windows={limit}")
        task = build_task(cfg)
        orig = task.encode

        def watching(frames, seed_parts, orig=orig, task=task):
            if seed_parts[0] == -1 and built and built[-1]._pipe is not None:
                pipes.append(weakref.ref(built[-1]._pipe))
            return orig(frames, seed_parts)

        task.encode = watching
        Trainer(cfg, task, progress=False).fit()
    assert len(built) == 4 and len(pipes) >= 4
    assert all(loader._pipe is None for loader in built) and all(ref() is None for ref in pipes)
    assert not any(loader._tmp.exists() for loader in built)  # close() ran, not only the end of iteration

    cfg = cfg_for(world, tmp_path / "err", "data.decoder=dali", "data.dali_decode=pyav", "train.max_steps=1")
    task = build_task(cfg)
    orig = task.encode

    def failing(frames, seed_parts):
        if seed_parts[0] == -1:
            pipes.append(weakref.ref(built[-1]._pipe))
            raise Crash()
        return orig(frames, seed_parts)

    task.encode = failing
    with pytest.raises(Crash):
        Trainer(cfg, task, progress=False).fit()
    assert built[-1]._pipe is None and pipes[-1]() is None and not built[-1]._tmp.exists()
