"""Membership inference metrics on hand-computed cases, and the attack on a model that
memorised its training records (AUC well above chance) versus the untrained model (chance)."""
import pytest

from evaluation.intervals import auc_interval, wilson_interval
from evaluation.membership import (
    attack_summary,
    flagged_members,
    loss_scores,
    membership_report,
    min_k_scores,
    roc_auc,
    roc_curve,
    score_histogram,
    tpr_at_fpr,
)
from evaluation.scoring import token_logprobs
from privacy.dp.train import examples_tokenize
from tests.evaluation.memorised import MAX_LENGTH, memorised
from tests.evaluation.test_scoring import plain_logprobs


def test_auc_is_one_for_perfect_separation_and_zero_when_reversed():
    assert roc_auc([3.0, 4.0, 5.0], [0.0, 1.0, 2.0]) == 1.0
    assert roc_auc([0.0, 1.0], [2.0, 3.0]) == 0.0


def test_auc_is_one_half_for_identical_scores():
    assert roc_auc([1.0, 1.0, 1.0], [1.0, 1.0]) == 0.5
    assert roc_auc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.5


def test_auc_counts_ties_as_one_half():
    # pairs (m, n): (2,1)=1 (2,2)=.5 (2,3)=0 (4,1)=1 (4,2)=1 (4,3)=1 -> 4.5 / 6
    assert roc_auc([2.0, 4.0], [1.0, 2.0, 3.0]) == pytest.approx(4.5 / 6)


def test_tpr_at_fpr_uses_threshold_above_the_allowed_non_members():
    nonmembers = [float(i) for i in range(100)]  # 0..99
    members = [98.5, 99.5, 50.0, 120.0]
    # 1% of 100 = 1 non-member may be flagged: threshold = 98 (second highest), flag > 98
    assert tpr_at_fpr(members, nonmembers, fpr=0.01) == 0.75
    # 0 allowed: threshold = 99
    assert tpr_at_fpr(members, nonmembers, fpr=0.0) == 0.5
    assert tpr_at_fpr(members, nonmembers, fpr=1.0) == 1.0


def test_tpr_at_fpr_is_conservative_when_non_members_tie_at_the_threshold():
    # 10% of 10 = 1 may be flagged; the top two tie at 5, so the threshold is 5 and none is flagged
    nonmembers = [5.0, 5.0] + [0.0] * 8
    assert tpr_at_fpr([5.0, 6.0], nonmembers, fpr=0.1) == 0.5


def test_attack_summary_gives_each_figure_its_interval_and_sample_size():
    members = [float(i) for i in range(40)]                  # 0..39
    nonmembers = [float(i) - 0.5 for i in range(30, 60)]     # 29.5..59.5: 10 members above none
    summary = attack_summary(members, nonmembers)
    # 0 false positives allowed with 30 non-members: threshold 59.5, no member above it
    assert summary["tpr_at_1pct_fpr"] == 0.0
    assert summary["tpr_at_1pct_fpr_interval"] == wilson_interval(0, 40)
    assert summary["tpr_at_1pct_fpr_interval"]["high"] == pytest.approx(0.0876, abs=1e-4)  # 0 of 40 is not 0
    assert summary["auc_interval"] == auc_interval(summary["auc"], 40, 30)
    assert summary["auc_interval"]["low"] < summary["auc"] < summary["auc_interval"]["high"]
    assert summary["fpr_resolution"] == pytest.approx(1 / 30)
    assert "30 non-members" in summary["note"] and "zero false positives" in summary["note"]


def test_tpr_interval_counts_the_flagged_members_and_the_note_goes_with_enough_non_members():
    nonmembers = [float(i) for i in range(100)]  # 1 of 100 may be flagged: threshold 98
    members = [98.5, 99.5, 50.0, 120.0]
    summary = attack_summary(members, nonmembers)
    assert flagged_members(members, nonmembers, 0.01) == 3
    assert summary["tpr_at_1pct_fpr_interval"] == wilson_interval(3, 4)
    assert summary["fpr_resolution"] == 0.01 and summary["note"] is None


def test_roc_curve_runs_monotonically_from_origin_to_one_one():
    points = roc_curve([0.9, 0.8, 0.4, 0.4], [0.7, 0.4, 0.1])
    assert points[0] == (0.0, 0.0) and points[-1] == (1.0, 1.0)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(points, points[1:]))
    assert (0.0, 0.5) in points and (2 / 3, 1.0) in points  # the tie at 0.4 moves both at once


def test_min_k_averages_the_lowest_fraction_of_token_logprobs():
    row = [-0.1, -5.0, -0.2, -3.0, -0.3, -0.1, -0.2, -0.1, -0.4, -0.5]
    assert min_k_scores([row], k=0.2) == [pytest.approx(-4.0)]   # lowest 2 of 10
    assert min_k_scores([[-1.0, -2.0]], k=0.2) == [-2.0]         # at least one token
    assert min_k_scores([row], k=1.0) == pytest.approx(loss_scores([row]))


def test_loss_score_is_the_negated_mean_loss():
    assert loss_scores([[-1.0, -3.0], [-0.5]]) == [-2.0, -0.5]


def test_histogram_shares_edges_and_counts_every_score():
    histogram = score_histogram([1.0, 2.0, 3.0], [0.0, 10.0])
    assert len(histogram["edges"]) == 21 and histogram["edges"][0] == 0.0 and histogram["edges"][-1] == 10.0
    assert sum(histogram["members"]) == 3 and sum(histogram["nonmembers"]) == 2


@pytest.mark.slow
def test_memorising_model_is_attackable_and_untrained_model_is_not():
    setup = memorised()
    trained = membership_report(setup.model, setup.tokenizer, setup.train, setup.heldout, max_length=MAX_LENGTH)
    untrained = membership_report(setup.base, setup.tokenizer, setup.train, setup.heldout, max_length=MAX_LENGTH)
    for kind in ("loss", "min_k"):
        assert trained[kind]["auc"] > 0.8
        assert abs(untrained[kind]["auc"] - 0.5) < 0.2
        assert trained[kind]["n_members"] == len(setup.train) and trained[kind]["n_nonmembers"] == len(setup.heldout)
        assert len(trained[kind]["histogram"]["members"]) == 20
    assert trained["loss"]["tpr_at_1pct_fpr"] > untrained["loss"]["tpr_at_1pct_fpr"]


@pytest.mark.slow
def test_member_token_logprobs_equal_the_plain_definition():
    setup = memorised()
    records = setup.train[:6] + setup.heldout[:6]
    fast = token_logprobs(setup.model, setup.tokenizer, records, max_length=MAX_LENGTH, batch_size=5)
    plain = plain_logprobs(setup.model, examples_tokenize(records, setup.tokenizer, max_length=MAX_LENGTH))
    assert [len(row) for row in fast] == [len(row) for row in plain]
    for one, other in zip(fast, plain):
        assert one == pytest.approx(other, abs=1e-4)


def _fake_scores(monkeypatch, scored: list[int]):
    """membership's scorer replaced: a record's token log-probs are its "score", and `scored`
    receives how many records each call scores."""
    from evaluation import membership

    def fake(model, tokenizer, records, *, max_length):
        scored.append(len(records))
        return [[record["score"]] * 3 for record in records]

    monkeypatch.setattr(membership, "token_logprobs", fake)


def test_a_separable_membership_attack_stops_at_the_first_look_that_shows_the_leak(monkeypatch):
    scored = []
    _fake_scores(monkeypatch, scored)
    members = [{"score": 1.0 + i / 100} for i in range(120)]
    nonmembers = [{"score": -1.0 - i / 100} for i in range(40)]
    report = membership_report(None, None, members, nonmembers, max_length=8, looks=3)
    sample = report["sample"]
    assert sample["decision"] == "leak" and sample["n"] == 40 and sample["cap"] == 160 and sum(scored) == 40
    assert report["loss"]["n_members"] == 30 and report["loss"]["n_nonmembers"] == 10
    assert sample["reason"].startswith("stopped at 40 of 160 records (look 1 of 3): the AUC interval [")
    assert "(30 members, 10 non-members) lies above chance 0.5" in sample["reason"]
    assert report["loss"]["auc_interval"]["confidence"] == pytest.approx(1 - 0.05 / 3)


def test_an_inseparable_membership_attack_scores_every_record_once(monkeypatch):
    scored = []
    _fake_scores(monkeypatch, scored)
    alternating = [{"score": float(i % 2)} for i in range(160)]
    report = membership_report(None, None, alternating[:120], alternating[120:], max_length=8, looks=3)
    # each look scores only the records the one before did not: 160 in all, none twice
    assert sum(scored) == 160 and report["loss"]["n_members"] == 120 and report["loss"]["n_nonmembers"] == 40
    assert report["sample"]["decision"] in ("bounded", "undecided") and report["sample"]["n"] == 160
