"""The one-run privacy audit: a lower bound on epsilon from the very training run being audited.

Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023,
arXiv 2305.08846). m audit canaries are drawn before training; each goes into the training data
by an independent fair coin flip (privacy.canary.audit_canaries; the flips stay on the client
side). After training, each canary gets a score, higher meaning "more likely trained on": here
log p(response | instruction) under the audited model minus the same under the base model (a
reference-calibrated score: what is easy for any model cancels out). The auditor guesses "in"
for the k best-scored canaries. If the training algorithm is (epsilon, delta)-DP in the unit
each canary is, the number of correct guesses among k is at most Binomial(k, e^eps / (1 + e^eps))
plus a term in delta (the paper's Theorem 3.1), so observing v correct rejects every epsilon whose
p-value is below the significance level: the largest rejected epsilon is the lower bound.

The p-value with delta > 0 is the paper's Proposition 5.2 (as jax_privacy's
`CanaryScoreAuditor.epsilon_one_run` computes it; written out here because that library would
bring JAX into the evaluation for one function). k is chosen after seeing the scores from a grid
fixed in advance (GUESS_GRID: powers of two), so the significance is divided among the grid's
sizes (Bonferroni). A bound of 0 is no evidence of leakage; it is not a proof of privacy.
No Django here.
"""
import numpy as np
from scipy.special import expit
from scipy.stats import binom
from scipy.optimize import brentq

from .intervals import auc_interval, wilson_interval
from .membership import REPORT_FPR, roc_auc, tpr_at_fpr

SIGNIFICANCE = 0.05  # the bound holds with 95% confidence
# The delta the audit tests at (or the budget's, if smaller). The p-value's delta term grows with
# 2 m delta: at a budget's delta of 1e-3 and m = 128 canaries no bound above 0 can be shown, so the
# audit tests (epsilon', 1e-5) and the claim is recomputed by the accountant at that delta.
AUDIT_DELTA = 1e-5
EPSILON_SEARCH_CAP = 100.0


def guess_grid(m: int) -> list[int]:
    """The numbers of "in" guesses the auditor may choose among: 1, 2, 4, ... up to m // 2."""
    grid, k = [], 1
    while k <= max(1, m // 2):
        grid.append(k)
        k *= 2
    return grid


def one_run_p_value(m: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """P[at least `correct` of `guesses` right] for an (epsilon, delta)-DP training run audited with
    m canaries (Steinke et al. 2023, Theorem 3.1 for delta = 0, Proposition 5.2 otherwise)."""
    q = expit(epsilon)  # e^eps / (1 + e^eps): the best a guess can do under epsilon-DP
    beta = binom.sf(correct - 1, guesses, q)
    if delta == 0 or correct == 0:
        return float(beta)
    i = np.arange(1, correct + 1)
    alpha = np.max((binom.sf(correct - i - 1, guesses, q) - beta) / i, initial=0.0)
    return float(min(beta + alpha * delta * 2 * m, 1.0))


def epsilon_lower_bound(m: int, guesses: int, correct: int, *, delta: float,
                        significance: float = SIGNIFICANCE) -> float:
    """The largest epsilon that `correct` right guesses out of `guesses` rejects at `significance`
    (0.0 when even epsilon = 0 is not rejected). Dimensionless, in the unit each canary is."""
    if not 0 <= correct <= guesses <= m:
        raise ValueError(f"need 0 <= correct <= guesses <= m, got {correct}, {guesses}, {m}")
    if guesses == 0 or one_run_p_value(m, guesses, correct, 0.0, delta) > significance:
        return 0.0

    def rejected(epsilon: float) -> float:  # positive while (epsilon, delta) is rejected
        return significance - one_run_p_value(m, guesses, correct, epsilon, delta)

    low, high = 0.0, 1.0
    while rejected(high) > 0:
        if high >= EPSILON_SEARCH_CAP:
            return EPSILON_SEARCH_CAP
        low, high = high, 2 * high
    return float(brentq(rejected, low, high, xtol=1e-6))


def audit_epsilon(in_scores: list[float], out_scores: list[float], *, delta: float,
                  significance: float = SIGNIFICANCE) -> dict:
    """The lower bound from the best k of guess_grid(m): {"epsilon_lower_bound", "guesses",
    "correct", "grid"}; the significance is shared among the grid's sizes (Bonferroni)."""
    m = len(in_scores) + len(out_scores)
    labelled = sorted([(score, True) for score in in_scores] + [(score, False) for score in out_scores],
                      key=lambda pair: -pair[0])
    grid = guess_grid(m)
    best = {"epsilon_lower_bound": 0.0, "guesses": 0, "correct": 0}
    for k in grid:
        # ties at the k-th score: count the worst case (out canaries first among equals)
        threshold = labelled[k - 1][0]
        above = [is_in for score, is_in in labelled if score > threshold]
        tied = sorted((is_in for score, is_in in labelled if score == threshold))  # False first
        chosen = above + tied[: k - len(above)]
        correct = sum(chosen)
        bound = epsilon_lower_bound(m, k, correct, delta=delta, significance=significance / len(grid))
        if bound > best["epsilon_lower_bound"] or (best["guesses"] == 0 and k == grid[0]):
            best = {"epsilon_lower_bound": bound, "guesses": k, "correct": correct}
    return {**best, "grid": grid}


def audit_report(in_scores: list[float], out_scores: list[float], *, delta: float,
                 significance: float = SIGNIFICANCE) -> dict:
    """The audit of one model from its canaries' calibrated scores: the epsilon lower bound at
    1 - significance confidence with the guesses behind it, AUC and TPR at 1% FPR. Plain data.
    With no canary on one side there is nothing to audit: the bound is None and "problem" says so."""
    report = {"m": len(in_scores) + len(out_scores), "n_in": len(in_scores), "n_out": len(out_scores),
              "delta": delta, "confidence": 1 - significance,
              "method": "one-run audit (Steinke, Nasr, Jagielski 2023), one-sided, Bonferroni over the guess grid",
              "score": "log p(response | instruction), audited model minus base model (nats)"}
    if not in_scores or not out_scores:
        side = "in the training data" if not in_scores else "left out"
        return {**report, "epsilon_lower_bound": None, "problem": f"no audit canary was {side}: nothing to compare"}
    found = audit_epsilon(in_scores, out_scores, delta=delta, significance=significance)
    report.update(found)
    report["auc"] = roc_auc(in_scores, out_scores)
    report["auc_interval"] = auc_interval(report["auc"], len(in_scores), len(out_scores))
    report["tpr_at_1pct_fpr"] = tpr_at_fpr(in_scores, out_scores, REPORT_FPR)
    report["tpr_at_1pct_fpr_interval"] = wilson_interval(round(report["tpr_at_1pct_fpr"] * len(in_scores)),
                                                         len(in_scores))
    report["max_possible_bound"] = epsilon_lower_bound(
        report["m"], min(found["grid"][-1], len(in_scores)), min(found["grid"][-1], len(in_scores)),
        delta=delta, significance=significance / len(found["grid"]))
    return report


def scores_calibrated(model_logprobs: list[float], base_logprobs: list[float]) -> list[float]:
    """Per canary, the audited model's log-prob minus the base model's (nats)."""
    if len(model_logprobs) != len(base_logprobs):
        raise ValueError("one base log-prob per canary is needed")
    return [a - b for a, b in zip(model_logprobs, base_logprobs)]

