"""VQA metrics against hand-made predictions: per-option vs per-question, overall pooling (section 6.4)."""

import math

import numpy as np
import pytest

from cjepa.eval.vqa.metrics import count_correct, metrics_from_counts, score_predictions
from tests.eval.vqa.helpers import desc, mc, scene


def test_per_option_and_per_question_differ_as_defined():
    """Q0 descriptive right; Q1 counterfactual 2/3 options right (question wrong); Q2 counterfactual 2/2 right;
    Q3 predictive 1/2 right; Q4 descriptive wrong."""
    qtype = np.array([0, 3, 3, 2, 0])
    row_q = np.array([0, 1, 1, 1, 2, 2, 3, 3, 4])
    right = np.array([1, 1, 0, 1, 1, 1, 0, 1, 0], bool)
    m = metrics_from_counts(count_correct(qtype, row_q, right))
    assert m["descriptive"] == pytest.approx(1 / 2)
    assert m["counterfactual_per_option"] == pytest.approx(4 / 5)
    assert m["counterfactual_per_question"] == pytest.approx(1 / 2)
    assert m["predictive_per_option"] == pytest.approx(1 / 2) and m["predictive_per_question"] == 0.0
    assert m["overall"] == pytest.approx((1 + 1 + 0) / 5)  # pooled per question over all four types
    assert math.isnan(m["explanatory_per_question"]) and m["explanatory_questions"] == 0
    assert m["counterfactual_questions"] == 2


def test_overall_weights_types_by_question_count_not_by_type():
    qtype = np.array([0] * 9 + [3])
    right = np.array([True] * 9 + [False])
    m = metrics_from_counts(count_correct(qtype, np.arange(10), right))
    assert m["overall"] == pytest.approx(0.9) and m["descriptive"] == 1.0 and m["counterfactual_per_question"] == 0.0


def test_counts_add_over_batches():
    a = count_correct(np.array([0, 3]), np.array([0, 1, 1]), np.array([1, 1, 0], bool))
    b = count_correct(np.array([3]), np.array([0, 0]), np.array([1, 1], bool))
    both = count_correct(np.array([0, 3, 3]), np.array([0, 1, 1, 2, 2]), np.array([1, 1, 0, 1, 1], bool))
    assert np.array_equal(a + b, both)


def test_question_without_rows_is_an_error():
    with pytest.raises(ValueError, match="no rows"):
        count_correct(np.array([0, 0]), np.array([0]), np.array([True]))


def test_score_predictions_file_matches_by_ids_and_counts_missing_as_wrong():
    questions = [
        scene(10000, [desc(0, "what color", "red"), mc(1, "explanatory", "why", ["correct", "wrong"])]),
        scene(10001, [mc(0, "counterfactual", "if", ["wrong", "wrong", "correct"]), desc(1, "how many", "2")]),
    ]
    predictions = [
        {"scene_index": 10001, "questions": [  # other order than the question file: matched by ids
            {"question_id": 1, "answer": "3"},
            {"question_id": 0, "choices": [{"choice_id": 2, "answer": "correct"}, {"choice_id": 0, "answer": "wrong"}]},
        ]},
        {"scene_index": 10000, "questions": [
            {"question_id": 0, "answer": "red"},
            {"question_id": 1, "choices": [{"choice_id": 0, "answer": "correct"}, {"choice_id": 1, "answer": "wrong"}]},
        ]},
    ]
    m = score_predictions(questions, predictions)
    assert m["missing"] == 1  # choice 1 of the counterfactual question
    assert m["descriptive"] == 0.5 and m["explanatory_per_question"] == 1.0
    assert m["counterfactual_per_option"] == pytest.approx(2 / 3) and m["counterfactual_per_question"] == 0.0
    assert m["overall"] == pytest.approx(2 / 4)
