"""The intervals beside the evaluation's figures, against values computed independently: printed
tables, the closed forms in their papers, scipy's own implementations, and a simulation."""
import math

import numpy as np
import pytest
from scipy.stats import binomtest, t

from evaluation.intervals import auc_interval, difference_interval, mean_interval, wilson_interval
from evaluation.membership import roc_auc


def test_wilson_interval_of_3_in_40_matches_the_closed_formula():
    # Wilson (1927) by hand, z = 1.959964: centre (p + z^2/2n) / (1 + z^2/n), half-width
    # z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) with p = 0.075, n = 40 -> [0.02584, 0.19864]
    interval = wilson_interval(3, 40)
    assert interval["low"] == pytest.approx(0.025836, abs=1e-6)
    assert interval["high"] == pytest.approx(0.198642, abs=1e-6)
    assert (interval["n"], interval["method"], interval["confidence"]) == (40, "Wilson score", 0.95)


@pytest.mark.parametrize("successes, n, confidence", [(0, 10, 0.95), (10, 10, 0.95), (17, 60, 0.95), (5, 9, 0.9)])
def test_wilson_interval_equals_scipys_wilson_interval(successes, n, confidence):
    expected = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    interval = wilson_interval(successes, n, confidence=confidence)
    assert (interval["low"], interval["high"]) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_wilson_interval_of_no_success_is_not_a_point_at_zero():
    interval = wilson_interval(0, 40)
    assert interval["low"] == 0.0 and interval["high"] == pytest.approx(0.0876, abs=1e-4)


def test_wilson_interval_of_an_empty_sample_has_no_bounds_and_does_not_raise():
    assert wilson_interval(0, 0) == {"low": None, "high": None, "n": 0, "method": "Wilson score", "confidence": 0.95}


def test_wilson_interval_refuses_more_successes_than_trials_and_a_bad_confidence():
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(5, 4)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 4, confidence=95)


def test_auc_interval_at_chance_has_the_exact_mann_whitney_null_standard_error():
    # with identical score distributions Var(U / mn) = (m + n + 1) / (12 m n) (Mann & Whitney
    # 1947); Hanley-McNeil's Q1 = Q2 = 1/3 at A = 0.5 give exactly that
    interval = auc_interval(0.5, 30, 30)
    expected_se = math.sqrt(61 / (12 * 30 * 30))
    assert interval["standard_error"] == pytest.approx(expected_se, rel=1e-12)
    assert interval["low"] == pytest.approx(0.5 - 1.959964 * expected_se, abs=1e-6)
    assert interval["high"] == pytest.approx(0.5 + 1.959964 * expected_se, abs=1e-6)
    assert (interval["n_pos"], interval["n_neg"], interval["n"], interval["method"]) == (30, 30, 60, "Hanley-McNeil")


def test_auc_interval_standard_error_matches_the_spread_of_simulated_aucs():
    # Hanley-McNeil's Q1, Q2 are exact for exponential scores: members Exp(rate 1/4), non-members
    # Exp(1) give AUC = 1 / (1 + 1/4) = 0.8. The spread of 4000 simulated AUCs is the true SE.
    rng = np.random.default_rng(7)
    members, nonmembers = rng.exponential(4.0, size=(4000, 25)), rng.exponential(1.0, size=(4000, 35))
    aucs = (members[:, :, None] > nonmembers[:, None, :]).mean(axis=(1, 2))
    assert aucs.mean() == pytest.approx(0.8, abs=0.005)
    assert auc_interval(0.8, 25, 35)["standard_error"] == pytest.approx(aucs.std(ddof=1), rel=0.03)


def test_auc_interval_is_clipped_to_the_unit_interval_and_empty_without_a_class():
    high = auc_interval(0.98, 5, 5)
    assert high["high"] == 1.0 and high["low"] < 0.98
    assert auc_interval(roc_auc([1.0], [0.0]), 1, 1)["low"] == 1.0  # AUC 1: SE 0, a point (read its n)
    empty = auc_interval(0.5, 0, 12)
    assert empty["low"] is None and empty["high"] is None and empty["n_neg"] == 12


def test_mean_interval_uses_the_t_quantile_of_the_printed_table():
    # t(0.975, 4 df) = 2.776 (any t table); mean 3, s = sqrt(2.5), s / sqrt(5) = 0.70711
    interval = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert interval["low"] == pytest.approx(3 - 2.776 * math.sqrt(0.5), abs=5e-4)
    assert interval["high"] == pytest.approx(3 + 2.776 * math.sqrt(0.5), abs=5e-4)
    assert (interval["n"], interval["method"]) == (5, "t")


def test_mean_interval_equals_scipys_t_interval():
    values = [2.31, 1.87, 2.05, 2.64, 1.92, 2.2, 2.48, 1.75]
    standard_error = np.std(values, ddof=1) / math.sqrt(len(values))
    expected = t.interval(0.9, len(values) - 1, loc=np.mean(values), scale=standard_error)
    interval = mean_interval(values, confidence=0.9)
    assert (interval["low"], interval["high"]) == pytest.approx(expected, abs=1e-12)


def test_mean_interval_needs_two_values_and_is_clipped_to_the_bounds_given():
    assert mean_interval([]) | mean_interval([0.4]) == {"low": None, "high": None, "n": 1, "method": "t",
                                                       "confidence": 0.95}
    clipped = mean_interval([0.0, 0.02, 0.9], bounds=(0.0, 1.0))
    assert clipped["low"] == 0.0 and clipped["high"] == 1.0
    assert mean_interval([0.0, 0.02, 0.9])["low"] < 0 < 1 < mean_interval([0.0, 0.02, 0.9])["high"]


def test_difference_interval_from_wilson_intervals_is_newcombes_method_10():
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, example (a): 56/70 vs 48/80,
    # and (b): 9/10 vs 3/10; method 10 (the score interval of each proportion, combined):
    # 0.0524 to 0.3339 and 0.1705 to 0.8090
    for (a, n_a, b, n_b), (low, high) in (((56, 70, 48, 80), (0.0524, 0.3339)), ((9, 10, 3, 10), (0.1705, 0.8090))):
        first, second = wilson_interval(a, n_a), wilson_interval(b, n_b)
        result = difference_interval(a / n_a, first["low"], first["high"], b / n_b, second["low"], second["high"])
        assert result["difference"] == pytest.approx(a / n_a - b / n_b)
        assert result["low"] == pytest.approx(low, abs=1e-4) and result["high"] == pytest.approx(high, abs=1e-4)


def test_difference_interval_is_wider_than_either_interval_and_refuses_an_estimate_outside_its_interval():
    result = difference_interval(3.0, 2.8, 3.2, 2.0, 1.9, 2.1)
    assert result["low"] == pytest.approx(1.0 - math.sqrt(0.2 ** 2 + 0.1 ** 2))
    assert result["high"] - result["low"] > 0.4
    with pytest.raises(ValueError, match="must lie in its interval"):
        difference_interval(3.5, 2.8, 3.2, 2.0, 1.9, 2.1)
