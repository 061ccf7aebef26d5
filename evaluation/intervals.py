"""Error bars for the evaluation's figures: every rate and mean comes with its sample size and an
interval, as plain data beside the figure.

Each function returns {"low", "high", "n", "method", "confidence"} (an AUC's also "n_pos",
"n_neg" and "standard_error"). A sample too small for an interval (no item for a rate, fewer
than two values for a mean, no member or no non-member for an AUC) gives low = high = None and
never raises: the caller states "no sample", the figure itself may still be shown.

- wilson_interval: the Wilson score interval of a binomial proportion (Wilson 1927). Unlike the
  normal ("Wald") interval it stays inside [0, 1] and does not collapse to a point at 0 or n
  successes, which matters here: attack rates on a private model are often 0 of 40.
- auc_interval: AUC +- z * SE with the standard error of Hanley & McNeil (1982, Radiology 143:29),
  clipped to [0, 1]. Their Q1 = A / (2 - A) and Q2 = 2A^2 / (1 + A) are exact for exponential
  score distributions and a fair approximation otherwise; at A = 0.5 they give the exact
  Mann-Whitney null variance (n_pos + n_neg + 1) / (12 n_pos n_neg). At AUC 0 or 1 the standard
  error is 0 and the interval a point: a known limit of the method, so read it with its n.
- mean_interval: the Student t interval of a mean, mean +- t(n-1) * s / sqrt(n), optionally
  clipped to the range the values can take.
- difference_interval: the interval of a - b for two independent estimates, from their own
  intervals (MOVER, Zou & Donner 2008; with Wilson intervals it is Newcombe's 1998 method 10
  for a difference of proportions). Two runs evaluated on the same held-out records are paired,
  not independent: treating them as independent makes the interval wider, never narrower.

No Django here: plain numbers in, plain data out.
"""
import math
import statistics

from scipy.stats import t

# The Wilson interval lives with the privacy app, which measures its detector's rates with it and
# sits below this one; the other intervals here build on its helpers.
from privacy.intervals import WILSON, interval_record as _interval, normal_quantile as _z, wilson_interval

__all__ = ["WILSON", "HANLEY_MCNEIL", "STUDENT_T", "MOVER", "wilson_interval", "auc_interval", "mean_interval",
           "difference_interval"]
HANLEY_MCNEIL, STUDENT_T = "Hanley-McNeil", "t"
MOVER = "MOVER (Zou & Donner), from each figure's own interval"


def auc_interval(auc: float, n_pos: int, n_neg: int, *, confidence: float = 0.95) -> dict:
    """AUC +- z * SE (Hanley & McNeil 1982), clipped to [0, 1]; n_pos positives (members), n_neg
    negatives (non-members). Without a positive or a negative the bounds are None."""
    z = _z(confidence)
    if n_pos < 0 or n_neg < 0 or not 0 <= auc <= 1:
        raise ValueError(f"need an AUC in [0, 1] and counts >= 0, got {auc!r}, {n_pos!r}, {n_neg!r}")
    result = {"n_pos": n_pos, "n_neg": n_neg, "standard_error": None}
    if not n_pos or not n_neg:
        return _interval(None, None, n_pos + n_neg, HANLEY_MCNEIL, confidence) | result
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    standard_error = math.sqrt(max(variance, 0.0))  # at AUC 0 or 1 the terms cancel to 0, rounding may go below
    return _interval(max(0.0, auc - z * standard_error), min(1.0, auc + z * standard_error), n_pos + n_neg,
                     HANLEY_MCNEIL, confidence) | result | {"standard_error": standard_error}


def mean_interval(values: list[float], *, confidence: float = 0.95,
                  bounds: tuple[float | None, float | None] = (None, None)) -> dict:
    """The Student t interval of the mean of `values` (same unit as the values), clipped to
    `bounds` (the range the values can take; None: unbounded on that side). Fewer than two
    values give None bounds."""
    _z(confidence)  # refuses a confidence outside (0, 1), as the other intervals do
    n = len(values)
    if n < 2:
        return _interval(None, None, n, STUDENT_T, confidence)
    mean = statistics.fmean(values)
    half_width = t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    low, high = mean - half_width, mean + half_width
    if bounds[0] is not None:
        low = max(low, bounds[0])
    if bounds[1] is not None:
        high = min(high, bounds[1])
    return _interval(float(low), float(high), n, STUDENT_T, confidence)


def difference_interval(a: float, a_low: float, a_high: float, b: float, b_low: float, b_high: float) -> dict:
    """The interval of the difference a - b of two independent estimates, each with its own
    interval at the same confidence (a_low <= a <= a_high): low = d - sqrt((a - a_low)^2 +
    (b_high - b)^2), high = d + sqrt((a_high - a)^2 + (b - b_low)^2). The result's n is None
    (it is of two samples); "difference" is a - b."""
    if not (a_low <= a <= a_high and b_low <= b <= b_high):
        raise ValueError(f"each estimate must lie in its interval, got {a!r} in [{a_low!r}, {a_high!r}] and "
                         f"{b!r} in [{b_low!r}, {b_high!r}]")
    difference = a - b
    low = difference - math.sqrt((a - a_low) ** 2 + (b_high - b) ** 2)
    high = difference + math.sqrt((a_high - a) ** 2 + (b - b_low) ** 2)
    return {"difference": float(difference), "low": float(low), "high": float(high), "n": None, "method": MOVER}
