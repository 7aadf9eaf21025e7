"""benchmarks/vqa_ceiling.py: the answer prior and the per-subtype scorer on hand-made questions and predictions;
``--subtypes`` on a hand-made finished run."""

import json

import pytest
import yaml

from benchmarks import vqa_ceiling as vc


def _scenes():
    return [
        {"scene_index": 0, "questions": [
            {"question_id": 0, "question_type": "descriptive", "question_subtype": "exist", "answer": "yes"},
            {"question_id": 1, "question_type": "descriptive", "question_subtype": "count", "answer": "2"},
            {"question_id": 2, "question_type": "counterfactual", "choices": [
                {"choice_id": 0, "answer": "correct"}, {"choice_id": 1, "answer": "wrong"}]},
        ]},
        {"scene_index": 1, "questions": [
            {"question_id": 0, "question_type": "descriptive", "question_subtype": "exist", "answer": "no"},
            {"question_id": 1, "question_type": "counterfactual", "choices": [
                {"choice_id": 0, "answer": "wrong"}, {"choice_id": 1, "answer": "wrong"},
                {"choice_id": 2, "answer": "correct"}]},
        ]},
    ]


def _predictions():
    return [
        {"scene_index": 0, "questions": [
            {"question_id": 0, "answer": "yes"}, {"question_id": 1, "answer": "3"},
            {"question_id": 2, "choices": [{"choice_id": 1, "answer": "wrong"}, {"choice_id": 0, "answer": "correct"}]},
        ]},
        {"scene_index": 1, "questions": [
            {"question_id": 0, "answer": "yes"},
            {"question_id": 1, "choices": [{"choice_id": 0, "answer": "wrong"}, {"choice_id": 1, "answer": "wrong"},
                                           {"choice_id": 2, "answer": "wrong"}]},
        ]},
    ]


def test_accuracy_by_subtype_scores_descriptive_per_question_and_choices_per_option():
    acc = vc.accuracy_by_subtype(_scenes(), _predictions())
    assert acc["exist"] == {"scored": 2, "accuracy": 0.5, "answers": {"yes": 2}}
    assert acc["count"] == {"scored": 1, "accuracy": 0.0, "answers": {"3": 1}}
    # choices are matched by id, not by position (scene 0 lists them in another order): 4 of the 5 options right
    assert acc["counterfactual"] == {"scored": 5, "accuracy": pytest.approx(4 / 5),
                                     "answers": {"wrong": 4, "correct": 1}}


def test_prior_answers_each_kind_with_its_most_frequent_training_answer():
    train = _scenes() + [{"scene_index": 2, "questions": [
        {"question_id": 0, "question_type": "descriptive", "question_subtype": "exist", "answer": "no"},
        {"question_id": 1, "question_type": "descriptive", "question_subtype": "exist", "answer": "no"}]}]
    m = vc.prior_metrics(train, _scenes())  # exist -> "no", count -> "2", counterfactual -> "wrong" (3 of 5)
    assert m["descriptive"] == pytest.approx(2 / 3)  # exist "no" right once of 2, count "2" right
    assert m["counterfactual_per_option"] == pytest.approx(3 / 5)
    assert m["counterfactual_per_question"] == 0.0


def test_subtypes_command_appends_one_row_for_a_finished_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "val.json").write_text(json.dumps(_scenes()))
    (run / "config.yaml").write_text(yaml.safe_dump({"vqa": {"protocol": "oracle",
                                                             "questions_val": str(tmp_path / "val.json")}}))
    (run / "predictions_val_oracle.json").write_text(json.dumps(_predictions()))
    out = tmp_path / "rows.jsonl"
    assert vc.main(["--subtypes", str(run), "--out", str(out), "--note", "hand-made"]) == 0
    row = json.loads(out.read_text())
    assert row["benchmark"] == "vqa_ceiling_subtypes" and row["run_dir"] == str(run) and row["note"] == "hand-made"
    assert row["by_subtype"]["exist"]["accuracy"] == 0.5 and row["git_sha"]
    assert "counterfactual" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="predictions_val_oracle.json not found"):
        (run / "predictions_val_oracle.json").unlink()
        vc.main(["--subtypes", str(run), "--out", str(out)])


def test_a_ceiling_run_records_the_reasoner_variant_and_the_starting_commit(tmp_path, monkeypatch):
    """The row names the variant that trained (token layout, masked-slot weight) and the commit at the start: a
    commit made while the reasoner trains must not be recorded as the code that trained it."""
    shas = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(vc, "provenance", lambda argv: {"git_sha": next(shas), "machine": "m", "date": "d"})
    out = tmp_path / "rows.jsonl"
    rc = vc.main(["--world", str(tmp_path / "world"), "--runs", str(tmp_path / "runs"), "--train", "6", "--val", "3",
                  "--observed", "12", "--total", "16", "--slot-dim", "8", "--max-objects", "4", "--name", "tiny",
                  "--out", str(out), "vqa.frame_sampling=span", "vqa.num_frames=4", "vqa.video_len=12",
                  "vqa.cf_frames=12", "vqa.token_layout=objects",
                  "vqa.max_steps=2", "vqa.word_dim=4", "vqa.heads=2", "vqa.depth=1", "vqa.ffn_dim=16"])
    assert rc == 0
    row = json.loads(out.read_text())
    assert row["git_sha"] == "a" * 40 and row["steps"] == 2
    assert row["config"]["vqa"]["token_layout"] == "objects" and row["config"]["vqa"]["slot_loss_weight"] == 0.0
