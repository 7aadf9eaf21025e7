"""`cjepa rollout`: a trained checkpoint extends every video of every split into a slot store (and a pickle)."""

import pickle
import re
import subprocess
import sys

import numpy as np

from cjepa.config import load_config
from cjepa.data.slot_store import SlotSplit, SlotStoreWriter
from cjepa.trainer import run_dir_of, train
from tests.helpers import REPO, SMOKE


def test_rollout_command_end_to_end(tmp_path):
    """Observed frames are copied unchanged, predicted frames are finite, all splits are written, resumable."""
    g = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2), ("test", 1)):
        with SlotStoreWriter(tmp_path / "slots", split, num_slots=5, slot_dim=16) as w:
            for i in range(n):
                w.add(f"{split}_{i}", g.normal(size=(24, 5, 16)).astype(np.float32))
    cfg = load_config([SMOKE],
                      [f"run.out_dir={tmp_path}", "data.source=store", f"data.path={tmp_path / 'slots'}",
                       "train.max_steps=3"])
    train(cfg, progress=False)
    cmd = [sys.executable, "-m", "cjepa.cli", "rollout", "-c", SMOKE, "data.source=store",
           f"data.path={tmp_path / 'slots'}",
           f"rollout.checkpoint={run_dir_of(cfg)}", "rollout.obs_frames=20", "rollout.target_frames=30",
           f"rollout.out={tmp_path / 'rolled'}", f"rollout.export_pickle={tmp_path / 'rolled.pkl'}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for split, n in (("train", 4), ("val", 2), ("test", 1)):
        out, src = SlotSplit(tmp_path / "rolled", split), SlotSplit(tmp_path / "slots", split)
        assert len(out) == n
        for k in out:
            assert out[k].shape == (30, 5, 16)
            assert np.array_equal(out[k][:20], src[k][:20]) and np.isfinite(out[k]).all()
    with open(tmp_path / "rolled.pkl", "rb") as fh:
        pk = pickle.load(fh)
    assert set(pk) == {"train", "val", "test"} and pk["val"]["val_0"].shape == (30, 5, 16)
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert re.search(r"^train\s+4\s+0\s+30\s*$", again.stdout, re.M), again.stdout  # nothing left to roll out


def test_rollout_needs_a_checkpoint():
    """Without rollout.checkpoint the command stops with a config error."""
    r = subprocess.run([sys.executable, "-m", "cjepa.cli", "rollout", "-c", SMOKE], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "rollout.checkpoint is required" in r.stderr


def test_cli_help_lists_every_command():
    """`cjepa --help` explains each subcommand; each subcommand has --help."""
    r = subprocess.run([sys.executable, "-m", "cjepa.cli", "--help"], cwd=REPO, capture_output=True, text=True)
    from cjepa.cli import COMMANDS

    for name in COMMANDS:
        assert name in r.stdout
        h = subprocess.run([sys.executable, "-m", "cjepa.cli", name, "--help"], cwd=REPO, capture_output=True,
                           text=True)
        assert h.returncode == 0 and "usage" in h.stdout


def test_rollout_decodes_with_the_encoder_run(tmp_path, capsys):
    """`--decode-with`: rollouts of the split are decoded by the encoder that made the slots; per-step metrics,
    mp4 clips and the tensorboard videos land under rollout.out; a directory without config.yaml is one clear line."""
    import json

    from cjepa.cli import main
    from cjepa.demo_pipeline import run_demo
    from tests.commands.test_demo import ENCODER, PREDICTOR
    from tests.tensorboard_helpers import event_videos

    out = tmp_path / "demo"
    run_demo(out, train_videos=2, val_videos=2, encoder_overrides=[a for a in ENCODER if a != "--encoder"],
             predictor_overrides=PREDICTOR, progress=False, decode_videos=0, log=lambda m: None)
    args = ["rollout", "-c", str(out / "predictor" / "config.yaml"), f"rollout.checkpoint={out / 'predictor'}",
            "rollout.obs_frames=8", "rollout.target_frames=12", f"rollout.out={tmp_path / 'rolled'}", "--splits", "val",
            "--decode-with", str(out / "encoder"), "--decode-videos", "2"]
    assert main(args) == 0
    assert (
        "decoded rollouts (2 videos x 4 steps; predictor | copy-last | reconstruction): PSNR" in capsys.readouterr().out
    )
    metrics = json.loads((tmp_path / "rolled" / "decoded" / "metrics.json").read_text())
    assert metrics["split"] == "val" and len(metrics["predictor"]["miou"]) == 4 and len(metrics["clips"]) == 2
    assert len(metrics["tb"]) == 2  # the clips as tensorboard videos at the step the predictor was trained to
    tb = tmp_path / "rolled" / "decoded" / "tb"
    assert all([s for s, _ in event_videos(tb, tag)] == [2] for tag in metrics["tb"])
    assert main([*args[:-4], "--decode-with", str(tmp_path)]) == 2
    assert f"--decode-with {tmp_path}: no config.yaml there" in capsys.readouterr().err
