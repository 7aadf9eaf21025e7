"""Training, reloading and evaluating a reasoner (cjepa.eval.vqa.reasoner): the loss falls on a learnable
question set, checkpoints carry the vocabulary, and a checkpoint evaluates to the same numbers as the end of
training."""

import json

import pytest

from cjepa.config import load_config
from cjepa.eval.vqa.evaluate import jsonable
from cjepa.eval.vqa.reasoner import evaluate_checkpoint, train_reasoner
from cjepa.utils.checkpoint import load_train_state
from tests.eval.vqa.synthetic import colour_overrides, make_colour_world


def test_tiny_training_run_learns_and_round_trips(tmp_path):
    paths = make_colour_world(tmp_path, {"train": 48, "val": 12})
    cfg = load_config([], colour_overrides(tmp_path, paths))
    summary = train_reasoner(cfg, progress=False)
    logs = [json.loads(line) for line in (tmp_path / "runs" / "vqa" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in logs if "train/loss" in r]
    assert len(losses) >= 8 and losses[-1] < 0.7 * losses[0], losses
    lrs = [r["train/lr"] for r in logs if "train/lr" in r]
    assert max(lrs) == pytest.approx(3e-3, rel=0.2) and lrs[-1] < 0.2 * max(lrs)  # warm-up then cosine decay
    fe = summary["final_eval"]
    assert fe["metrics"]["descriptive_questions"] == 12 and fe["metrics"]["explanatory_questions"] == 12
    assert fe["metrics"]["descriptive"] > 0.5  # chance is 1/3
    ckpt = summary["checkpoint"]
    task_state = load_train_state(ckpt)["task"]
    assert task_state["vocab"]["a_vocab"]["green"] == 13 and task_state["shape"] == {"num_slots": 3, "slot_dim": 6}
    assert (tmp_path / "runs" / "vqa" / "vocab.json").is_file()
    res, info, out_dir = evaluate_checkpoint(load_config([],
                                                         colour_overrides(tmp_path, paths, f"vqa.checkpoint={ckpt}")),
                                                         progress=False)
    assert jsonable(res)["metrics"] == pytest.approx(fe["metrics"])  # same numbers from the reloaded checkpoint
    assert (out_dir / "eval_val_original.json").is_file() and (out_dir / "predictions_val_original.json").is_file()


@pytest.mark.parametrize("variant", ["vqa.token_layout=objects", "vqa.slot_loss_weight=1.0"])
def test_a_checkpoint_evaluates_with_the_variant_it_was_trained_as(tmp_path, variant):
    """An evaluation config that does not repeat the reasoner's token layout or masked-slot objective still builds
    the trained model (from the checkpoint's config) and reproduces the end-of-training numbers."""
    paths = make_colour_world(tmp_path, {"train": 12, "val": 6})
    summary = train_reasoner(load_config([], colour_overrides(tmp_path, paths, variant, "vqa.epochs=2")),
                             progress=False)
    res, _, _ = evaluate_checkpoint(load_config([], colour_overrides(tmp_path, paths,
                                                                     f"vqa.checkpoint={summary['checkpoint']}")),
                                    progress=False, out_dir=tmp_path / "eval")
    assert jsonable(res)["metrics"] == pytest.approx(summary["final_eval"]["metrics"])
