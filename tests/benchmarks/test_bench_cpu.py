"""bench_cpu's allocator comparison: ratios paired within a process pair, against the system process's baseline."""

from __future__ import annotations

import pytest

from benchmarks import bench_cpu


def child(base_ms: list[float], now_ms: list[float]) -> dict:
    return {"before": {"samples_ms": base_ms, "page_faults_per_step": 100.0},
            "now": {"samples_ms": now_ms, "page_faults_per_step": 10.0}}


def test_ratios_are_taken_against_the_system_baseline_of_the_same_pair():
    pairs = [
        # pair 1: the machine was slow for both processes; pair 2: fast
        {"system": child([600, 600, 600, 600, 600], [300, 300, 300, 300, 300]),
         "tuned": child([500, 500, 500, 500, 500], [200, 200, 200, 200, 200])},
        {"system": child([300, 300, 300, 300, 300], [150, 150, 150, 150, 150]),
         "tuned": child([250, 250, 250, 250, 250], [100, 100, 100, 100, 100])},
    ]
    res = bench_cpu.combine_pairs(pairs, "before")
    assert list(res) == ["before @ system", "before @ tuned", "now @ system", "now @ tuned"]
    assert res["before @ system"]["speedup_median"] == pytest.approx(1.0)
    assert res["before @ tuned"]["speedup_median"] == pytest.approx(1.2)
    assert res["now @ system"]["speedup_median"] == pytest.approx(2.0)
    # 600/200 in pair 1 and 300/100 in pair 2: 3x in both; across pairs it would be 1.5x or 6x
    assert res["now @ tuned"]["speedup_median"] == pytest.approx(3.0)
    assert res["now @ tuned"]["speedup_p20"] == pytest.approx(3.0)
    assert res["now @ tuned"]["median_ms"] == pytest.approx(150.0)
    assert res["now @ tuned"]["rounds"] == 10
    assert res["now @ tuned"]["page_faults_per_step"] == 10.0


def test_children_get_the_timing_options_but_not_the_parents():
    argv = ["--section", "savi", "--processes", "3", "--rounds", "10", "--save", "--allocator=tuned",
            "--out", "x.jsonl", "--compile", "--processes=2"]
    assert bench_cpu.child_argv(argv) == ["--section", "savi", "--rounds", "10", "--compile"]
