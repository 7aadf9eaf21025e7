"""`cjepa demo` (cjepa/commands/demo.py, cjepa/demo_pipeline.py): the whole chain at toy size, resumption, the
verdict."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cjepa.cli import main
from cjepa.commands.demo import _verdict
from tests.tensorboard_helpers import event_videos

# Tiny stages: 2 encoder steps on 4 short videos, 2 predictor steps; the demo's own configs otherwise.
ENCODER = ["--encoder", "train.max_steps=2", "--encoder", "data.batch_size=2", "--encoder", "encoder.data.val_videos=2",
           "--encoder", "encoder.data.val_batch_size=2", "--encoder", "world.num_frames=32", "--encoder",
           "world.future_frames=8",
           "--encoder", "encoder.savi.enc_channels=8", "--encoder", "encoder.savi.dec_channels=8"]
PREDICTOR = ["train.max_steps=2", "train.val_every=2", "train.ckpt_every=2", "data.batch_size=8",
             "data.val_max_windows=16",
             "model.depth=1", "model.mlp_dim=32", "model.history_frames=3", "model.pred_frames=2",
             "rollout.eval_videos=2"]


@pytest.mark.slow
def test_demo_runs_every_stage_then_resumes(tmp_path, capsys):
    """render -> SAVi -> extraction -> predictor -> rollout; the summary names each stage; a second run reuses the
    shards, resumes the finished trainers and skips stored videos instead of redoing them."""
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--train-videos", "4", "--val-videos", "2", "--no-progress", *ENCODER,
            *PREDICTOR]
    assert main(args) == 0
    text = capsys.readouterr().out
    for row in ("encoder FG-ARI", "slot swap rate, whole held-out videos", "rollout MSE, copy-last-frame baseline",
                "worst rollout step", "time: render (s)", "time: predictor (s)"):
        assert row in text, row
    assert "copy-last-frame baseline on held-out rollouts" in text
    for stage in ("world/train/manifest.json", "encoder/config.yaml", "slots/meta.json", "predictor/summary.json"):
        assert (out / stage).exists(), stage
    summary = json.loads((out / "predictor" / "summary.json").read_text())
    assert summary["steps"] == 2 and len(summary["final_eval"]["mse"]) == len(summary["final_eval"]["baseline_mse"])
    record = json.loads((out / "demo_summary.json").read_text())  # the figures README quotes, with provenance
    fe = summary["final_eval"]
    assert record["ratio_per_step"] == [p / b for p, b in zip(fe["mse"], fe["baseline_mse"])]
    assert 0.0 <= record["video_swap_rate"] <= 1.0 and record["git"]["sha"] and record["date"]
    dec = record["decoded_rollouts"]  # held-out rollouts decoded by SAVi: per-step metrics, clips, tensorboard
    assert dec["videos"] == 2 and "decoded rollouts (2 videos x" in text and "time: decode (s)" in text
    for name in ("predictor", "copy_last", "reconstruction"):
        assert {k: len(v) for k,
                v in dec[name].items()} == {k: dec["steps"] for k in ("psnr", "ssim", "fg_ari", "miou")}
    assert len(dec["clips"]) == 2 and all(
        (out / "rollout_video").joinpath(p.split("/")[-1]).is_file() for p in dec["clips"]
    )
    tb = out / "rollout_video" / "tb"  # the decoded clips as tensorboard videos, at the predictor's trained step
    assert len(dec["tb"]) == 2 and all([s for s, _ in event_videos(tb, tag)] == [2] for tag in dec["tb"])
    enc_tb = EventAccumulator(str(out / "encoder" / "tb"))
    enc_tb.Reload()
    assert {"video/val/fg_ari", "video/val/swap_rate"} <= set(enc_tb.Tags()["scalars"])  # whole held-out videos
    shard = next((out / "world" / "train").glob("*.tar"))
    before = shard.stat().st_mtime_ns
    assert main(args) == 0
    assert shard.stat().st_mtime_ns == before  # the rendered world is reused, not redrawn
    err = capsys.readouterr().err
    assert f"resumed from {out / 'encoder'}" in err and f"resumed from {out / 'predictor'}" in err
    assert len(list(tb.glob("events.out.tfevents.*"))) == 1  # the rerun's clips replace the first run's
    assert all(len(event_videos(tb, tag)) == 1 for tag in dec["tb"])


def test_demo_slots_variant(tmp_path, capsys):
    """`--slots`: the built-in slot world straight into the predictor, with the rollout rows and the verdict."""
    assert main(["demo", "--slots", "--out", str(tmp_path), "--no-progress", *PREDICTOR, "data.synthetic.num_train=8",
                 "data.synthetic.num_val=4", "data.synthetic.num_frames=24"]) == 0
    text = capsys.readouterr().out
    assert "rollout MSE, predictor (mean over steps)" in text and "copy-last-frame baseline" in text


def test_verdict_names_the_winning_steps_and_the_encoder_limit():
    fe = {"mse": [1.0, 1.0, 3.0], "baseline_mse": [2.0, 2.0, 2.0]}
    text = _verdict(fe)
    assert text.startswith("The predictor beats") and "2 of 3 rollout steps (steps 1, 2)" in text
    text = _verdict({"mse": [3.0, 1.0], "baseline_mse": [2.0, 1.5]}, {"fg_ari": 0.05})
    assert "does NOT beat" in text and "steps 2" in text and "video FG-ARI 0.05" in text
    assert "FG-ARI" not in _verdict(fe, {"fg_ari": 0.8})
    text = _verdict({"mse": [1.0, 1.0], "baseline_mse": [2.0, 4.0]}, {"fg_ari": 0.8}, swap_rate=0.01)
    assert (
        "every rollout step (worst step 0.50x)" in text
        and "1.0% of held-out frames" in text
        and "learned dynamics" in text
    )
    assert "read the ratio with care" in _verdict(fe, {"fg_ari": 0.8}, swap_rate=0.2)


def test_whole_video_scores_reach_the_encoders_tensorboard(tmp_path):
    """Extraction's whole-video FG-ARI and swap rate are tensorboard scalars per split (a split without masks has
    none)."""
    from cjepa.demo_pipeline import log_video_scores

    log_video_scores([{"split": "train", "fg_ari": 0.5, "swap_rate": 0.25},
                      {"split": "val", "fg_ari": 0.75, "swap_rate": 0.125},
                      {"split": "test"}], tmp_path, 500)
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["video/train/fg_ari", "video/train/swap_rate", "video/val/fg_ari",
                                             "video/val/swap_rate"]
    assert [(e.step, e.value) for e in acc.Scalars("video/val/swap_rate")] == [(500, 0.125)]
