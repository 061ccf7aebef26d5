"""Membership inference: can an attacker tell the training records from held-out ones?

Two scores per record, both "higher = more likely a member":
  - loss:  the mean response-token log-prob, i.e. the negated training loss (Yeom et al. 2018);
  - min_k: Min-K% Prob (Shi et al. 2024), the mean of the lowest k fraction of token log-probs,
           which ignores the easy tokens every model predicts well.
The attack quality is the ROC AUC (0.5 = chance) and the TPR at a low FPR (Carlini et al. 2022
argue the low-FPR regime is what matters for privacy). Both come with their 95% interval and
sample size (evaluation.intervals).
"""
import math

import numpy as np
from scipy.stats import rankdata

from .intervals import auc_interval, wilson_interval
from .scoring import token_logprobs
from .sequential import auc_decision, look_sizes, sample_until_decided

HISTOGRAM_BINS = 20
REPORT_FPR = 0.01
# below this many non-members, floor(REPORT_FPR * n) = 0: the TPR is the TPR at zero false positives
REPORT_FPR_MIN_NONMEMBERS = math.ceil(1 / REPORT_FPR)


def loss_scores(token_logprobs: list[list[float]]) -> list[float]:
    """Per record, the negated mean token loss = mean token log-prob (nats); higher = member."""
    return [_mean(row) for row in token_logprobs]


def min_k_scores(token_logprobs: list[list[float]], k: float = 0.2) -> list[float]:
    """Per record, the mean of its lowest max(1, floor(k * n)) token log-probs (n tokens), in
    nats; higher = member. k is a fraction in (0, 1]."""
    if not 0 < k <= 1:
        raise ValueError("k must be a fraction in (0, 1]")
    return [_mean(sorted(row)[: max(1, math.floor(k * len(row)))]) for row in token_logprobs]


def _mean(values: list[float]) -> float:
    if not values:
        raise ValueError("a record has no scored tokens")
    return sum(values) / len(values)


def roc_auc(member_scores: list[float], nonmember_scores: list[float]) -> float:
    """P(score of a random member > score of a random non-member), ties counting 1/2: the
    Mann-Whitney U statistic divided by n_members * n_nonmembers."""
    n_m, n_n = len(member_scores), len(nonmember_scores)
    if not n_m or not n_n:
        raise ValueError("need at least one member and one non-member score")
    ranks = rankdata(np.concatenate([member_scores, nonmember_scores]), method="average")
    u_statistic = ranks[:n_m].sum() - n_m * (n_m + 1) / 2
    return float(u_statistic / (n_m * n_n))


def tpr_at_fpr(member_scores: list[float], nonmember_scores: list[float], fpr: float = 0.01) -> float:
    """The fraction of members flagged at the strictest threshold that keeps the FPR <= fpr
    (flagged_members / the number of members)."""
    return flagged_members(member_scores, nonmember_scores, fpr) / len(member_scores)


def flagged_members(member_scores: list[float], nonmember_scores: list[float], fpr: float = 0.01) -> int:
    """How many members are flagged at the strictest threshold that keeps the FPR <= fpr.

    With the n non-member scores sorted from highest, a = floor(fpr * n) of them may be
    flagged; the threshold is the (a+1)-th highest non-member score and a record is flagged
    when its score is STRICTLY above it. So at most a non-members (fewer when scores tie at
    the threshold) are flagged, and the result is conservative. When a >= n every record is
    flagged."""
    if not 0 <= fpr <= 1:
        raise ValueError("fpr must be in [0, 1]")
    ordered = sorted(nonmember_scores, reverse=True)
    allowed = math.floor(fpr * len(ordered))
    if allowed >= len(ordered):
        return len(member_scores)
    threshold = ordered[allowed]
    return sum(score > threshold for score in member_scores)


def roc_curve(member_scores: list[float], nonmember_scores: list[float]) -> list[tuple[float, float]]:
    """(fpr, tpr) points from (0, 0) to (1, 1), one per distinct score, thresholds descending
    (flag score >= threshold); tied scores move both rates in one step. Both coordinates are
    non-decreasing."""
    labelled = sorted([(s, 1) for s in member_scores] + [(s, 0) for s in nonmember_scores], reverse=True)
    n_m, n_n = len(member_scores), len(nonmember_scores)
    points, true_pos, false_pos, index = [(0.0, 0.0)], 0, 0, 0
    while index < len(labelled):
        score = labelled[index][0]
        while index < len(labelled) and labelled[index][0] == score:
            true_pos += labelled[index][1]
            false_pos += 1 - labelled[index][1]
            index += 1
        points.append((false_pos / n_n, true_pos / n_m))
    return points


def score_histogram(member_scores: list[float], nonmember_scores: list[float], *,
                    bins: int = HISTOGRAM_BINS) -> dict:
    """Counts of both score lists over the same `bins` equal-width bins (bins + 1 edges)."""
    edges = np.histogram_bin_edges(np.concatenate([member_scores, nonmember_scores]), bins=bins)
    return {
        "edges": edges.tolist(),
        "members": np.histogram(member_scores, bins=edges)[0].tolist(),
        "nonmembers": np.histogram(nonmember_scores, bins=edges)[0].tolist(),
    }


def attack_summary(member_scores: list[float], nonmember_scores: list[float], *, confidence: float = 0.95) -> dict:
    """AUC, TPR at 1% FPR, counts, the shared-edge histogram and the ROC points of one score,
    with the intervals (at `confidence`) of both figures (AUC: Hanley-McNeil; TPR: Wilson over the
    flagged members) and the FPR resolution 1 / n_nonmembers, the smallest non-zero FPR the sample
    can measure. With fewer than REPORT_FPR_MIN_NONMEMBERS non-members "note" says that the TPR at
    1% FPR is in fact the TPR at zero false positives (else "note" is None)."""
    auc = roc_auc(member_scores, nonmember_scores)
    n_members, n_nonmembers = len(member_scores), len(nonmember_scores)
    flagged = flagged_members(member_scores, nonmember_scores, REPORT_FPR)
    note = None
    if n_nonmembers < REPORT_FPR_MIN_NONMEMBERS:
        note = (f"with {n_nonmembers} non-members no false positive is allowed at {REPORT_FPR:.0%} FPR: "
                "this is the TPR at zero false positives")
    return {
        "auc": auc,
        "auc_interval": auc_interval(auc, n_members, n_nonmembers, confidence=confidence),
        "tpr_at_1pct_fpr": flagged / n_members,
        "tpr_at_1pct_fpr_interval": wilson_interval(flagged, n_members, confidence=confidence),
        "fpr_resolution": 1 / n_nonmembers,
        "note": note,
        "n_members": n_members,
        "n_nonmembers": n_nonmembers,
        "histogram": score_histogram(member_scores, nonmember_scores),
        "roc": roc_curve(member_scores, nonmember_scores),
    }


def look_split(records: int, n_members: int, n_nonmembers: int) -> tuple[int, int]:
    """(members, non-members) among the first `records` of a look: each side in proportion to its
    whole size, at least one of each, all of both at records = n_members + n_nonmembers."""
    members = min(n_members, max(1, round(records * n_members / (n_members + n_nonmembers))))
    return members, max(1, min(n_nonmembers, records - members))


def membership_report(model, tokenizer, train_records: list[dict], heldout_records: list[dict], *,
                      max_length: int, k: float = 0.2, looks: int = 1) -> dict:
    """Both attacks ("loss" and "min_k") on members = train_records vs non-members =
    heldout_records; plain data (floats, ints, lists) ready for JSON.

    The records are a cap: the attack scores them in `looks` looks of growing size
    (evaluation.sequential; each look the first members and non-members in their given order, in
    proportion to the two splits, look_split) and stops at the first whose loss-attack AUC interval
    lies above 0.5 (a leak) or below 0.5 + AUC_MARGIN (no leak of that size). Both attacks'
    intervals are at the looks' Bonferroni level; "sample" says how many records were scored and
    why it stopped. looks = 1 scores every record."""
    if not train_records or not heldout_records:
        raise ValueError("membership inference needs at least one member and one non-member")
    members: list[list[float]] = []
    nonmembers: list[list[float]] = []

    def score(records: int, confidence: float) -> tuple[float, int, int]:
        want_members, want_nonmembers = look_split(records, len(train_records), len(heldout_records))
        for scored, records_of_side, wanted in ((members, train_records, want_members),
                                                (nonmembers, heldout_records, want_nonmembers)):
            new = records_of_side[len(scored):wanted]  # a look scores only the records the one before did not
            scored.extend(token_logprobs(model, tokenizer, new, max_length=max_length) if new else [])
        return roc_auc(loss_scores(members), loss_scores(nonmembers)), len(members), len(nonmembers)

    _, sample = sample_until_decided(
        look_sizes(len(train_records) + len(heldout_records), looks), score,
        lambda figure, confidence: auc_decision(*figure, confidence=confidence), unit="records")
    confidence = sample["confidence"]
    return {
        "loss": attack_summary(loss_scores(members), loss_scores(nonmembers), confidence=confidence),
        "min_k": attack_summary(min_k_scores(members, k), min_k_scores(nonmembers, k), confidence=confidence) | {"k": k},
        "sample": sample | {"members_available": len(train_records), "nonmembers_available": len(heldout_records)},
    }
