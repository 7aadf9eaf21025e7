"""`cjepa vqa`: help for every action, and the command-line flow make-billiards -> counterfactual -> train ->
evaluate -> score, each ending with its summary table."""

import json

import pytest

from cjepa.cli import main
from cjepa.commands.vqa import ACTIONS
from cjepa.config import load_config
from cjepa.trainer import train


def test_help_for_every_action(capsys):
    with pytest.raises(SystemExit) as e:
        main(["vqa", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for action in ACTIONS:
        assert action in out
        with pytest.raises(SystemExit) as e:
            main(["vqa", action, "--help"])
        assert e.value.code == 0 and "usage: cjepa vqa " + action in capsys.readouterr().out
    assert main(["vqa"]) == 0


def test_command_line_flow(tmp_path, capsys):
    world = tmp_path / "world"
    assert main(["vqa", "make-billiards", "--out", str(world), "--train", "8", "--val", "3", "--observed", "24",
                 "--total", "28",
                 "--slots", "4", "--slot-dim", "16", "--max-objects", "4"]) == 0
    assert "counterfactual" in capsys.readouterr().out
    common = [f"run.out_dir={tmp_path / 'runs'}", "run.device=cpu", "model.num_slots=4", "model.slot_dim=16",
              "model.history_frames=3",
              "model.pred_frames=2", "model.depth=1", "model.heads=2", "model.mlp_dim=16", "data.source=store",
              f"data.path={world / 'slots'}", f"vqa.questions_train={world / 'questions/train.json'}",
              f"vqa.questions_val={world / 'questions/val.json'}", f"vqa.annotations={world / 'annotations.json'}",
              f"vqa.cf_slots={tmp_path / 'cf'}", "vqa.video_len=24", "vqa.num_frames=4", "vqa.cf_frames=24"]
    train(load_config([], [*common, "run.name=pred", "data.batch_size=8", "train.max_steps=2", "train.epochs=0",
                           "rollout.eval_videos=1", "rollout.eval_chains=1"]), progress=False)
    assert main(["vqa", "counterfactual", "--no-progress", *common,
                 f"vqa.predictor_checkpoint={tmp_path / 'runs/pred'}"]) == 0
    out = capsys.readouterr().out
    assert "cf questions" in out and "counterfactual store" in out
    reasoner = [*common, f"vqa.slots={world / 'slots'}", "vqa.protocol=counterfactual_rollout", "vqa.word_dim=4",
                "vqa.heads=2",
                "vqa.depth=1", "vqa.ffn_dim=16", "vqa.head_hidden=8", "vqa.batch_size=8", "vqa.epochs=1",
                "vqa.eval_offsets=[0,2]",
                "run.name=vqa", "train.log_every=1"]
    assert main(["vqa", "train", "--no-progress", *reasoner]) == 0
    out = capsys.readouterr().out
    assert "counterfactual per question" in out and "answered from a counterfactual rollout: 6/6" in out
    assert main(["vqa", "evaluate", "--no-progress", *reasoner, f"vqa.checkpoint={tmp_path / 'runs/vqa'}"]) == 0
    out = capsys.readouterr().out
    assert "mean over 2 offsets" in out
    preds = tmp_path / "runs/vqa/predictions_val_counterfactual_rollout.json"
    assert json.loads(preds.read_text())[0]["scene_index"] == 10000
    assert main(["vqa", "score", "--questions", str(world / "questions/val.json"), "--predictions", str(preds)]) == 0
    assert "missing predictions (counted wrong): 0" in capsys.readouterr().out
    assert main(["vqa", "study", *common, "study.name=s", 'study.grid=["masking.num_masked=0,1"]', "--list"]) == 0
    assert "num_masked1" in capsys.readouterr().out


def test_oracle_world_trains_under_the_oracle_protocol(tmp_path, capsys):
    """make-billiards --oracle -> vqa train with vqa.protocol=oracle: every counterfactual question reads a re-run."""
    world = tmp_path / "world"
    assert main(["vqa", "make-billiards", "--out", str(world), "--train", "6", "--val", "3", "--observed", "24",
                 "--total", "28",
                 "--slots", "4", "--slot-dim", "8", "--max-objects", "4", "--oracle"]) == 0
    assert f"vqa.cf_slots={world}/oracle/counterfactual" in capsys.readouterr().out
    assert main(["vqa", "train", "--no-progress", f"run.out_dir={tmp_path / 'runs'}", "run.device=cpu",
                 "run.name=oracle",
                 f"vqa.questions_train={world / 'questions/train.json'}",
                 f"vqa.questions_val={world / 'questions/val.json'}",
                 f"vqa.annotations={world / 'annotations.json'}", f"vqa.slots={world / 'oracle/slots'}",
                 f"vqa.cf_slots={world / 'oracle/counterfactual'}", "vqa.protocol=oracle", "vqa.frame_sampling=span",
                 "vqa.video_len=24", "vqa.num_frames=4", "vqa.cf_frames=24", "vqa.word_dim=4", "vqa.heads=2",
                 "vqa.depth=1",
                 "vqa.ffn_dim=16", "vqa.head_hidden=8", "vqa.batch_size=8", "vqa.epochs=1"]) == 0
    out = capsys.readouterr().out
    assert (
        "mean over 1 offsets" in out
        and "answered from a counterfactual rollout: 6/6" in out
        and "protocol oracle" in out
    )
