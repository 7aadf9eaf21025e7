"""The t-interval of a few success rates, on fixed numbers."""

import math

import pytest
from scipy import stats

from cjepa.utils.stats import mean_ci, welch_difference, wilson_interval


def test_three_rates_use_the_t_quantile():
    """40, 50, 60: mean 50, s = 10, sem = 10 / sqrt(3); t(0.975, 2) = 4.3027 (tables) -> +- 24.84.
    The normal quantile (1.96) would give +- 11.32."""
    ci = mean_ci([40.0, 50.0, 60.0])
    assert ci.mean == 50.0 and ci.n == 3
    assert ci.half_width == pytest.approx(4.302652729749464 * 10 / math.sqrt(3), rel=1e-12)
    assert ci.half_width == pytest.approx(24.84, abs=0.005)
    assert (ci.low, ci.high) == pytest.approx((50.0 - 24.841, 50.0 + 24.841), abs=1e-3)
    assert ci.text() == "50.0 +- 24.8"


def test_matches_scipy_interval_for_other_sizes_and_levels():
    rates = [12.0, 30.0, 18.0, 26.0, 20.0, 22.0, 16.0, 24.0, 28.0]  # e.g. 3 training seeds x 3 evaluation seeds
    for conf in (0.9, 0.95, 0.99):
        lo, hi = stats.t.interval(conf, len(rates) - 1, loc=sum(rates) / len(rates), scale=stats.sem(rates))
        ci = mean_ci(rates, conf)
        assert (ci.low, ci.high) == pytest.approx((lo, hi), rel=1e-12)


def test_single_and_equal_rates():
    one = mean_ci([34.0])
    assert one.mean == 34.0 and one.half_width is None and one.low is None and "no interval" in one.text()
    assert mean_ci([20.0, 20.0, 20.0]).half_width == 0.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])
    with pytest.raises(ValueError, match="finite"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], 95)


def test_wilson_interval_on_fixed_counts():
    """18 of 50 (the planner report's OC-JEPA figure), by hand with z = 1.95996: centre (0.36 + z^2/100) /
    (1 + z^2/50) = 0.36999, half-width z sqrt(0.36 * 0.64 / 50 + z^2 / 10000) / (1 + z^2/50) = 0.12860, so
    24.1 % - 49.9 %; the normal interval would be 22.7 - 49.3 %."""
    lo, hi = wilson_interval(18, 50)
    assert (lo, hi) == pytest.approx((0.24139, 0.49859), abs=5e-5)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.27753, abs=5e-5)  # not the normal interval's 0 width
    with pytest.raises(ValueError, match="11/10"):
        wilson_interval(11, 10)


def test_welch_difference_on_fixed_rates():
    """40, 50, 60 against 20, 30, 40: difference 20; each variance 100, so se = sqrt(100/3 + 100/3) = 8.165 and
    Welch's df = (200/3)^2 / (2 (100/3)^2 / 2) = 4; t(0.975, 4) = 2.7764 (tables) -> 20 +- 22.67; t = 2.449 on 4
    df gives p = 0.0705 two-sided."""
    d = welch_difference([40.0, 50.0, 60.0], [20.0, 30.0, 40.0])
    assert d.difference == 20.0
    assert (d.low, d.high) == pytest.approx((20.0 - 22.669, 20.0 + 22.669), abs=2e-3)
    assert d.p_value == pytest.approx(0.0705, abs=5e-4)
    swapped = welch_difference([20.0, 30.0, 40.0], [40.0, 50.0, 60.0])
    assert (swapped.difference, swapped.low, swapped.high) == pytest.approx((-20.0, -d.high, -d.low))
    # unequal sizes and spreads, against the Welch-Satterthwaite formula written out
    a, b = [36.0, 36.0, 26.0], [28.0, 20.0, 24.0, 22.0]
    va, vb = stats.tvar(a) / 3, stats.tvar(b) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    unequal = welch_difference(a, b)
    assert unequal.difference == pytest.approx(32.6667 - 23.5, abs=1e-4)
    centre = unequal.difference
    assert (unequal.low, unequal.high) == pytest.approx((centre - half, centre + half), rel=1e-9)


def test_welch_difference_refuses_what_has_no_interval():
    with pytest.raises(ValueError, match="two or more rates per group, got 1 and 3"):
        welch_difference([30.0], [20.0, 30.0, 40.0])
    with pytest.raises(ValueError, match="no spread"):
        welch_difference([30.0, 30.0], [20.0, 20.0])
    with pytest.raises(ValueError, match="finite"):
        welch_difference([30.0, float("nan")], [20.0, 30.0])
