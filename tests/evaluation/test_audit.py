"""The one-run audit's lower bound (evaluation.audit) against values computed independently."""
import math
import random

import pytest
from scipy.special import expit
from scipy.stats import binom

from evaluation.audit import audit_epsilon, audit_report, epsilon_lower_bound, guess_grid, one_run_p_value

# (m, guesses, correct, significance, delta) -> epsilon lower bound, computed on 2026-12-07 with
# google-deepmind/jax_privacy at commit 8967688c26d46f3b74bfdfe61ef1f984b887abab,
# `jax_privacy.auditing._epsilon_one_run(0, m, guesses, correct, significance, delta)` (the
# function behind `CanaryScoreAuditor.epsilon_one_run`), run outside this project.
JAX_PRIVACY_BOUNDS = [
    ((1000, 100, 100, 0.05, 1e-5), 3.465376229385333),
    ((1000, 100, 90, 0.05, 1e-5), 1.6261436787042223),
    ((1000, 500, 400, 0.05, 1e-6), 1.1985778369049547),
    ((200, 16, 15, 0.05, 1e-3), 0.35560563891140956),
    ((100, 10, 10, 0.05, 0.0), 1.0518732154273494),
    ((1000, 1000, 600, 0.05, 1e-5), 0.2972269575896597),
    ((200, 32, 32, 0.05 / 7, 1e-3), 0.0),
    ((50, 8, 5, 0.05, 1e-3), 0.0),
]


@pytest.mark.parametrize(("args", "expected"), JAX_PRIVACY_BOUNDS)
def test_lower_bound_matches_jax_privacy(args, expected):
    m, guesses, correct, significance, delta = args
    assert epsilon_lower_bound(m, guesses, correct, delta=delta, significance=significance) == pytest.approx(
        expected, abs=1e-5)


@pytest.mark.parametrize(("guesses", "correct"), [(10, 10), (40, 35), (100, 80), (64, 50)])
def test_lower_bound_without_delta_is_the_binomial_tail_root(guesses, correct):
    # delta = 0: P[Binomial(guesses, e^eps / (1 + e^eps)) >= correct] = significance at the bound
    bound = epsilon_lower_bound(1000, guesses, correct, delta=0.0, significance=0.05)
    assert bound > 0
    assert binom.sf(correct - 1, guesses, expit(bound)) == pytest.approx(0.05, rel=1e-4)


def test_half_right_guesses_prove_nothing():
    assert epsilon_lower_bound(200, 50, 25, delta=1e-5) == 0.0
    assert one_run_p_value(200, 50, 25, 0.0, 1e-5) > 0.05


def test_more_correct_guesses_never_lower_the_bound():
    bounds = [epsilon_lower_bound(500, 64, correct, delta=1e-5) for correct in range(40, 65)]
    assert bounds == sorted(bounds)
    assert bounds[-1] > 2


def test_guess_grid_is_powers_of_two_up_to_half():
    assert guess_grid(128) == [1, 2, 4, 8, 16, 32, 64]
    assert guess_grid(2) == [1]


def test_separated_scores_give_a_bound_and_mixed_ones_none():
    rng = random.Random(0)
    flips = [rng.random() < 0.5 for _ in range(256)]
    separated = audit_epsilon([10.0 + i for i, f in enumerate(flips) if f], [-float(i) for i, f in enumerate(flips) if not f],
                              delta=1e-5)
    assert separated["epsilon_lower_bound"] > 2 and separated["correct"] == separated["guesses"]
    noise = [rng.gauss(0, 1) for _ in flips]  # scores that know nothing of the flips
    mixed = audit_epsilon([s for s, f in zip(noise, flips) if f], [s for s, f in zip(noise, flips) if not f], delta=1e-5)
    assert mixed["epsilon_lower_bound"] < 0.5


def test_tied_scores_count_against_the_auditor():
    # every score equal: whichever k it guesses, the out canaries are taken first among equals
    result = audit_epsilon([1.0] * 50, [1.0] * 50, delta=1e-5)
    assert result["correct"] == 0 and result["epsilon_lower_bound"] == 0.0


def test_report_without_canaries_on_one_side_says_so():
    report = audit_report([], [0.1, 0.2], delta=1e-5)
    assert report["epsilon_lower_bound"] is None
    assert "no audit canary was in the training data" in report["problem"]


def test_report_gives_auc_tpr_and_the_ceiling():
    report = audit_report([5.0, 6.0, 7.0, 8.0] * 16, [0.0, 0.5, 1.0, 1.5] * 16, delta=1e-5)
    assert report["auc"] == 1.0 and report["tpr_at_1pct_fpr"] == 1.0
    assert report["m"] == 128 and report["n_in"] == 64
    assert 0 < report["epsilon_lower_bound"] <= report["max_possible_bound"] + 1e-9
    assert math.isclose(report["confidence"], 0.95)
