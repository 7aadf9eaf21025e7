"""Deterministic evaluation over fixed offsets (Q7): two runs agree, means and ensembles are what they claim."""

import numpy as np
import pytest
import torch

from cjepa.data.slot_store import SlotSplit
from cjepa.eval.vqa.data import VQADataset, resolve_video_keys
from cjepa.eval.vqa.evaluate import evaluate_reasoner, jsonable, predictions_to_clevrer, write_outputs
from cjepa.eval.vqa.metrics import metrics_from_counts, score_predictions
from cjepa.eval.vqa.model import ALOEReasoner
from cjepa.eval.vqa.questions import build_question_set, iter_answers, iter_texts, load_question_file
from cjepa.eval.vqa.text import Vocab
from tests.eval.vqa.synthetic import make_colour_world


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    paths = make_colour_world(root, {"val": 10})
    scenes = load_question_file(paths["val"])
    vocab = Vocab.build(iter_texts(scenes), iter_answers(scenes))
    qs = build_question_set(scenes, vocab, 8, 4)
    videos = SlotSplit(root / "slots", "val")
    ds = VQADataset(qs, videos, resolve_video_keys(qs, set(videos)), video_len=12, num_frames=3)
    torch.manual_seed(0)
    model = ALOEReasoner(num_words=vocab.num_words, num_answers=vocab.num_answers, slot_dim=6, num_slots=3,
                         num_frames=3,
                         question_len=8, choice_len=4, word_dim=4, heads=2, depth=1, ffn_dim=16, dropout=0.3,
                         head_hidden=8)
    return ds, model, vocab, scenes


def run(ds, model, offsets, **kw):
    return evaluate_reasoner(model, ds, offsets, batch_size=3, device=torch.device("cpu"), **kw)


def test_two_runs_are_equal_even_from_train_mode(setup):
    """No randomness at evaluation: fixed offsets, dropout off (the model's mode is restored afterwards)."""
    ds, model, *_ = setup
    model.train()
    a, b = run(ds, model, [0, 1, 2, 3]), run(ds, model, [0, 1, 2, 3])
    assert model.training
    assert jsonable(a) == jsonable(b)
    np.testing.assert_array_equal(a["prediction"], b["prediction"])


def test_mean_over_offsets_and_ensemble(setup):
    """`metrics` is the mean of the per-offset metrics; the ensemble answers score as `ensemble` in the file format."""
    ds, model, vocab, scenes = setup
    res = run(ds, model, [0, 3])
    singles = [run(ds, model, [o])["metrics"] for o in (0, 3)]
    for k in ("overall", "descriptive", "explanatory_per_option"):
        assert res["metrics"][k] == pytest.approx((singles[0][k] + singles[1][k]) / 2)
        assert res["metrics_std"][k] == pytest.approx(abs(singles[0][k] - singles[1][k]) / 2)
    pred_file = predictions_to_clevrer(ds.qs, res["prediction"], vocab.answer_names)
    scored = score_predictions(scenes, pred_file)
    assert scored["missing"] == 0
    for k, v in res["ensemble"].items():
        assert scored[k] == pytest.approx(v, nan_ok=True)


def test_rank_shards_add_up_to_the_whole(setup):
    """Two ranks' counts (strided shards) add up to the single-process counts."""
    ds, model, *_ = setup
    whole = run(ds, model, [1])
    parts = [run(ds, model, [1], rank=r, world_size=2) for r in (0, 1)]
    for t, key in (("descriptive", "descriptive"), ("explanatory", "explanatory_per_question")):
        n = [p["metrics"][f"{t}_questions"] for p in parts]
        assert sum(n) == whole["metrics"][f"{t}_questions"] > 0
        acc = sum(p["metrics"][key] * k for p, k in zip(parts, n) if k > 0) / sum(n)
        assert acc == pytest.approx(whole["metrics"][key])


def test_bad_offsets_and_outputs(setup, tmp_path):
    ds, model, vocab, _ = setup
    with pytest.raises(ValueError, match="out of range 0..3"):
        run(ds, model, [4])
    res = run(ds, model, [0])
    m, p = write_outputs(res, ds.qs, vocab.answer_names, tmp_path, "val_original")
    assert m.name == "eval_val_original.json" and p.is_file()
    assert metrics_from_counts(np.zeros((4, 4)))["overall"] != metrics_from_counts(np.zeros((4, 4)))["overall"]  # NaN
