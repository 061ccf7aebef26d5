"""The group-sequential sampling of the attacks and the judge: its schedule, its decisions, its
stop reasons, and (by simulation, fixed seeds) that the Bonferroni-adjusted intervals keep their
95% coverage although the sample stops on what it sees."""
import random

import pytest

from evaluation.intervals import wilson_interval
from evaluation.membership import roc_auc
from evaluation.sequential import (
    BOUNDED,
    CONTINUE,
    INFORMATIVE,
    LEAK,
    UNDECIDED,
    UNINFORMATIVE,
    auc_decision,
    consistency_decision,
    look_confidence,
    look_sizes,
    rate_decision,
    sample_until_decided,
)

CHANCE = 1 / 30


def test_look_sizes_double_up_to_the_cap():
    assert look_sizes(30, 3) == (8, 15, 30)
    assert look_sizes(120, 3) == (30, 60, 120)
    assert look_sizes(64, 1) == (64,)


def test_a_small_cap_has_fewer_looks_never_a_repeated_size():
    assert look_sizes(2, 3) == (1, 2)
    assert look_sizes(1, 4) == (1,)
    assert look_sizes(0, 3) == ()


def test_look_sizes_refuse_a_number_of_looks_out_of_range():
    with pytest.raises(ValueError, match="looks must be between 1 and 6"):
        look_sizes(30, 0)
    with pytest.raises(ValueError, match="looks must be between 1 and 6"):
        look_sizes(30, 7)


def test_each_look_is_at_the_bonferroni_level():
    assert look_confidence(1) == pytest.approx(0.95)
    assert look_confidence(3) == pytest.approx(1 - 0.05 / 3)


def _bernoulli_attack(rate: float, cap: int, seed: int):
    """A simulated attack whose targets are hit with probability `rate`, scored lazily: how many
    targets were scored, and the sequential result."""
    rng = random.Random(seed)
    outcomes = [rng.random() < rate for _ in range(cap)]
    scored = []

    def measure(n, confidence):
        scored.append(n)
        return sum(outcomes[:n]), n

    def decide(figure, confidence):
        return rate_decision(*figure, chance=CHANCE, multiple=5, confidence=confidence)

    return scored, sample_until_decided(look_sizes(cap, 3), measure, decide, unit="targets")


def test_a_leaky_attack_stops_early_with_leak():
    scored, ((_hits, n), record) = _bernoulli_attack(0.25, 120, seed=1)
    assert record["decision"] == LEAK and n < 120 and scored == [30]
    assert record["reason"].startswith("stopped at 30 of 120 targets (look 1 of 3): the interval [")
    assert "lies above chance 0.033" in record["reason"]
    assert record["n"] == 30 and record["cap"] == 120 and record["planned_looks"] == 3 and record["looks"] == 1


def test_a_chance_level_attack_stops_bounded_or_runs_to_the_cap():
    decisions = []
    for seed in range(200):
        scored, (_, record) = _bernoulli_attack(CHANCE, 120, seed=seed)
        decisions.append(record["decision"])
        if record["decision"] == UNDECIDED:
            assert record["n"] == 120 and scored == [30, 60, 120]
            assert record["reason"].startswith("ran to the cap, 120 targets (3 looks), without a decision")
        elif record["decision"] == BOUNDED:
            assert "below 5x chance, 0.167" in record["reason"]
    # a leak called on an attack at chance is the test's error, at most 5% over all looks together
    assert decisions.count(LEAK) <= 0.05 * len(decisions)
    assert decisions.count(BOUNDED) + decisions.count(UNDECIDED) >= 0.95 * len(decisions)
    assert decisions.count(BOUNDED) > 0


def test_a_rate_decision_names_the_interval_and_what_it_excludes():
    assert rate_decision(0, 120, chance=CHANCE, multiple=5, confidence=0.98).outcome == BOUNDED
    assert rate_decision(6, 30, chance=CHANCE, multiple=5, confidence=0.98).outcome == LEAK
    undecided = rate_decision(2, 30, chance=CHANCE, multiple=5, confidence=0.98)
    assert undecided.outcome == CONTINUE and "holds chance 0.033 and reaches 5x chance, 0.167" in undecided.why


def _coverage(rate: float, cap: int, *, repeats: int, seed: int) -> float:
    """The share of simulated sequential runs whose reported (stopping look's) interval holds `rate`."""
    rng = random.Random(seed)
    sizes = look_sizes(cap, 3)
    covered = 0
    for _ in range(repeats):
        outcomes = [rng.random() < rate for _ in range(cap)]
        (hits, n), _ = sample_until_decided(
            sizes, lambda n, confidence, outcomes=outcomes: (sum(outcomes[:n]), n),
            lambda figure, confidence: rate_decision(*figure, chance=CHANCE, multiple=5, confidence=confidence),
            unit="targets")
        interval = wilson_interval(hits, n, confidence=look_confidence(len(sizes)))
        covered += interval["low"] <= rate <= interval["high"]
    return covered / repeats


@pytest.mark.parametrize("rate", [CHANCE, 0.1, 5 * CHANCE, 0.3])
def test_the_adjusted_intervals_keep_95_percent_coverage_despite_the_stopping(rate):
    # 2000 runs: a coverage of 0.95 would be measured within about +-0.01
    assert _coverage(rate, 60, repeats=2000, seed=7) >= 0.94


def _scores(shift: float, n: int, rng: random.Random) -> list[float]:
    return [rng.gauss(shift, 1.0) for _ in range(n)]


def test_membership_auc_stops_with_leak_for_separated_scores_and_bounded_for_identical_ones():
    rng = random.Random(3)
    members, nonmembers = _scores(1.5, 200, rng), _scores(0.0, 200, rng)
    leaky = _auc_run(members, nonmembers)
    assert leaky[1]["decision"] == LEAK and leaky[1]["n"] < 200
    same = _auc_run(_scores(0.0, 400, rng), _scores(0.0, 400, rng))
    assert same[1]["decision"] in (BOUNDED, UNDECIDED)
    assert "non-members)" in same[1]["reason"]


def _auc_run(members, nonmembers):
    def measure(n, confidence):
        return roc_auc(members[:n], nonmembers[:n]), n, n

    return sample_until_decided(look_sizes(len(members), 3), measure,
                                lambda figure, confidence: auc_decision(*figure, confidence=confidence),
                                unit="members")


def test_an_auc_interval_below_the_margin_is_bounded():
    assert auc_decision(0.5, 400, 400, confidence=0.98).outcome == BOUNDED
    assert auc_decision(0.5, 10, 10, confidence=0.98).outcome == CONTINUE


def test_a_judge_that_picks_by_position_is_found_uninformative_at_the_first_look():
    judged = []

    def measure(n, confidence):
        judged.append(n)
        return 0, n  # never the same answer in both orders

    _, record = sample_until_decided(
        look_sizes(64, 3), measure,
        lambda figure, confidence: consistency_decision(*figure, threshold=0.6, confidence=confidence),
        unit="questions")
    assert judged == [16] and record["decision"] == UNINFORMATIVE
    assert record["reason"].startswith("stopped at 16 of 64 questions (look 1 of 3): the consistency interval [0.000, ")
    assert consistency_decision(60, 64, threshold=0.6, confidence=0.98).outcome == INFORMATIVE


def test_sampling_with_no_look_is_refused():
    with pytest.raises(ValueError, match="cap is 0"):
        sample_until_decided((), lambda n, c: n, lambda f, c: None, unit="targets")


def test_an_attack_that_never_decides_runs_to_the_cap_and_says_so():
    scored = []

    def measure(n, confidence):
        scored.append(n)
        return 1, n  # the first target hit, none after: 1 of 30 holds chance and reaches 5x chance

    _, record = sample_until_decided(
        look_sizes(30, 3), measure,
        lambda figure, confidence: rate_decision(*figure, chance=CHANCE, multiple=5, confidence=confidence),
        unit="targets")
    assert scored == [8, 15, 30] and record["decision"] == UNDECIDED and record["n"] == 30
    assert record["reason"] == ("ran to the cap, 30 targets (3 looks), without a decision: the interval [0.004, 0.212] "
                                "of 1 of 30 holds chance 0.033 and reaches 5x chance, 0.167")
