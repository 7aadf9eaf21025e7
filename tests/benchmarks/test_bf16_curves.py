"""benchmarks/bf16_curves.py: bf16's change of a seed against fp32's spread over seeds, on fixed numbers."""

import json

import pytest

from benchmarks.bf16_curves import curve, verdict


def rows(fp32: dict, bf16: dict) -> list[dict]:
    return ([{"precision": "fp32", "seed": s, "final_loss": v} for s, v in fp32.items()]
            + [{"precision": "bf16", "seed": s, "final_loss": v} for s, v in bf16.items()])


def test_a_change_within_the_fp32_spread_is_within_noise():
    v = verdict(rows({0: 1.0, 1: 1.5, 2: 1.2}, {0: 1.1, 1: 1.2, 2: 1.25}), "final_loss")
    assert v["seeds"] == [0, 1, 2]
    assert v["fp32_spread"] == pytest.approx(0.5)
    assert v["bf16_max_change"] == pytest.approx(0.3)  # seed 1: 1.5 -> 1.2, paired by seed
    assert v["within_noise"] is True


def test_a_change_beyond_the_spread_is_not_and_unpaired_seeds_do_not_count():
    v = verdict(rows({0: 1.0, 1: 1.1, 3: 9.0}, {0: 1.3, 1: 1.1, 2: 0.0}), "final_loss")
    assert v["seeds"] == [0, 1]  # seed 2 has no fp32 run, seed 3 no bf16 run
    assert v["fp32_spread"] == pytest.approx(0.1) and v["bf16_max_change"] == pytest.approx(0.3)
    assert v["within_noise"] is False


def test_curve_reads_the_logged_training_losses(tmp_path):
    lines = [{"step": 25, "train/loss": 0.5}, {"step": 25, "val/loss": 0.7}, {"step": 50, "train/loss": 0.25}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert curve(tmp_path) == ([25, 50], [0.5, 0.25])
