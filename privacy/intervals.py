"""The Wilson score interval of a proportion, for rates measured on a sample (a detector's
recall and precision here; evaluation.intervals for the evaluation's figures, which builds on
this one). Returns {"low", "high", "n", "method", "confidence"}; n = 0 gives None bounds.

Wilson (1927): unlike the normal ("Wald") interval it stays inside [0, 1] and does not collapse
to a point at 0 or n successes. No Django here: plain numbers in, plain data out.
"""
import math

from scipy.stats import norm

WILSON = "Wilson score"


def wilson_interval(successes: float, n: int, *, confidence: float = 0.95) -> dict:
    """The Wilson score interval of the proportion successes / n (both counts; a fractional
    count is taken as it is, e.g. a tie counted as half a win). n = 0 gives None bounds."""
    z = normal_quantile(confidence)
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes!r} of {n!r}")
    if n == 0:
        return interval_record(None, None, n, WILSON, confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return interval_record(max(0.0, centre - half_width), min(1.0, centre + half_width), n, WILSON, confidence)


def normal_quantile(confidence: float) -> float:
    """The two-sided standard normal quantile of `confidence` (1.96 for 0.95)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(norm.ppf(0.5 + confidence / 2))


def interval_record(low: float | None, high: float | None, n: int, method: str, confidence: float) -> dict:
    return {"low": None if low is None else float(low), "high": None if high is None else float(high), "n": n,
            "method": method, "confidence": confidence}
