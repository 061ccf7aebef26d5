"""Sample sizes that decide: an attack or the judge samples in a few looks of growing size and
stops at the first look whose interval decides what the report needs, or at a cap.

The schedule is group-sequential and fixed before any item is scored: with a cap C and K planned
looks, look k (k = 1..K) uses the first ceil(C / 2^(K - k)) items, so the sizes double up to the
cap (C/4, C/2, C for K = 3); a size that would repeat the one before is dropped, so a small cap
has fewer looks. The items are drawn in a fixed (seeded) order and a look only adds the next ones:
the figure at a look is exactly the attack on its first n items, and a run is reproducible.

Why the intervals keep their coverage despite stopping on the data: at each look the interval is
computed at confidence 1 - alpha / K (Bonferroni over the K planned looks; alpha = 0.05). By the
union bound the K intervals all cover the true value together with probability at least
1 - alpha, so whichever look the rule stops at, the interval reported there covers it with
probability at least 95%, and every decision below (each made by an interval excluding a value)
errs with probability at most 5%. The price is a wider interval at each look (z = 2.39 instead
of 1.96 at K = 3) than a single fixed-size test would give. The same holds for every figure
computed on the same sample (the top-5 rate beside the top-1 that decides): they are reported at
the same adjusted level. tests/evaluation/test_sequential.py checks the coverage by simulation.

The decisions, one per sampled figure:
- a rate against chance (name reconstruction's top-1): "leak" when the lower bound is above the
  chance rate; "bounded" when the upper bound is below the multiple of chance the attack is
  powered for (reconstruction.POWER_MULTIPLE): no leak of that size;
- an AUC (membership inference): "leak" when the lower bound is above 0.5; "bounded" when the
  upper bound is below 0.5 + AUC_MARGIN;
- the judge's consistency: "uninformative" when the upper bound is below the threshold below
  which the report refuses a win-rate (utility.JUDGE_MIN_CONSISTENCY); "informative" when the
  lower bound is above it.
Otherwise the look says "continue"; at the cap an undecided sample stops with "undecided".
No Django here: plain numbers in, plain data out.
"""
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .intervals import auc_interval, wilson_interval

ALPHA = 0.05            # the family-wise error of all looks together: the reported intervals are 95%
AUC_MARGIN = 0.1        # membership AUC below 0.5 + this is "no leak of the size that matters"
MAX_LOOKS = 6
CONTINUE, UNDECIDED = "continue", "undecided"
LEAK, BOUNDED = "leak", "bounded"
INFORMATIVE, UNINFORMATIVE = "informative", "uninformative"
METHOD = "group-sequential, Bonferroni over the planned looks"


@dataclass(frozen=True)
class Decision:
    """What one look concluded: `outcome` (CONTINUE or a final word) and `why`, in words with
    the interval ("the interval [0.057, 0.51] lies above chance 0.033")."""

    outcome: str
    why: str


def look_sizes(cap: int, looks: int) -> tuple[int, ...]:
    """The cumulative sample size of each planned look: ceil(cap / 2^(looks - k)) for k = 1..looks,
    a size equal to the one before dropped (so a cap below 2^(looks - 1) has fewer looks).
    cap 30, looks 3: (8, 15, 30); cap 0: () (nothing to sample)."""
    if not 1 <= looks <= MAX_LOOKS:
        raise ValueError(f"looks must be between 1 and {MAX_LOOKS}, got {looks!r}")
    if cap < 0:
        raise ValueError(f"cap must be at least 0, got {cap!r}")
    sizes = (math.ceil(cap / 2 ** (looks - k)) for k in range(1, looks + 1))
    return tuple(dict.fromkeys(size for size in sizes if size > 0))


def look_confidence(planned_looks: int, *, alpha: float = ALPHA) -> float:
    """The confidence of each look's interval, 1 - alpha / planned_looks (Bonferroni), so that
    all planned looks' intervals hold together with probability 1 - alpha."""
    return 1 - alpha / max(planned_looks, 1)


def smallest_cap(looks: int) -> int:
    """The smallest cap whose schedule has `looks` distinct looks: 2^(looks - 1)."""
    return 2 ** (looks - 1)


def sample_until_decided(sizes: tuple[int, ...], measure: Callable[[int, float], Any],
                         decide: Callable[[Any, float], Decision], *, unit: str) -> tuple[Any, dict]:
    """Run the looks: measure(n, confidence) gives the figure on the first n items (the caller
    scores only the items it has not scored yet), decide(figure, confidence) what it shows. Stops
    at the first decided look or at the last one. Returns (the last look's figure, its
    stop_record). `sizes` must be non-empty (look_sizes of a cap of at least 1)."""
    if not sizes:
        raise ValueError("no look to sample: the cap is 0")
    confidence = look_confidence(len(sizes))
    for look, n in enumerate(sizes, start=1):
        figure = measure(n, confidence)
        decision = decide(figure, confidence)
        if decision.outcome != CONTINUE:
            break
    return figure, stop_record(sizes, look=look, decision=decision, unit=unit)


def stop_record(sizes: tuple[int, ...], *, look: int, decision: Decision, unit: str) -> dict:
    """The sample's account for the report: n used, the cap, the looks planned and made, each
    look's confidence, the outcome (UNDECIDED when the last look did not decide) and the reason
    in words: "stopped at 15 of 30 targets (look 2 of 3): the interval [...] lies above chance
    0.033", or "ran to the cap, 30 targets (3 looks), without a decision: ..."."""
    n, cap, planned = sizes[look - 1], sizes[-1], len(sizes)
    outcome = UNDECIDED if decision.outcome == CONTINUE else decision.outcome
    if outcome == UNDECIDED:
        reason = f"ran to the cap, {cap} {unit} ({planned} look{'s' if planned > 1 else ''}), without a decision: {decision.why}"
    else:
        reason = f"stopped at {n} of {cap} {unit} (look {look} of {planned}): {decision.why}"
    return {"n": n, "cap": cap, "unit": unit, "planned_looks": planned, "looks": look, "sizes": list(sizes),
            "confidence": look_confidence(planned), "familywise_confidence": 1 - ALPHA, "method": METHOD,
            "decision": outcome, "reason": reason}


def _bounds(interval: dict) -> str:
    return f"[{interval['low']:.3f}, {interval['high']:.3f}]"


def rate_decision(successes: int, n: int, *, chance: float, multiple: float, confidence: float) -> Decision:
    """A rate against chance from successes of n, by its Wilson interval at `confidence`: LEAK
    above chance, BOUNDED below `multiple` x chance, else CONTINUE."""
    interval = wilson_interval(successes, n, confidence=confidence)
    if interval["low"] is None:
        return Decision(CONTINUE, "no item scored yet")
    powered = multiple * chance
    text = f"the interval {_bounds(interval)} of {successes} of {n}"
    if interval["low"] > chance:
        return Decision(LEAK, f"{text} lies above chance {chance:.3f}")
    if interval["high"] < powered:
        return Decision(BOUNDED, f"{text} lies below {multiple:g}x chance, {powered:.3f}: no leak of the size the "
                                 "attack is powered for")
    return Decision(CONTINUE, f"{text} holds chance {chance:.3f} and reaches {multiple:g}x chance, {powered:.3f}")


def auc_decision(auc: float, n_pos: int, n_neg: int, *, confidence: float, margin: float = AUC_MARGIN) -> Decision:
    """An attack's AUC by its Hanley-McNeil interval at `confidence`: LEAK above 0.5, BOUNDED
    below 0.5 + margin, else CONTINUE."""
    interval = auc_interval(auc, n_pos, n_neg, confidence=confidence)
    if interval["low"] is None:
        return Decision(CONTINUE, "no member or no non-member scored yet")
    text = f"the AUC interval {_bounds(interval)} ({n_pos} members, {n_neg} non-members)"
    if interval["low"] > 0.5:
        return Decision(LEAK, f"{text} lies above chance 0.5")
    if interval["high"] < 0.5 + margin:
        return Decision(BOUNDED, f"{text} lies below {0.5 + margin:.2f}: no leak of AUC {0.5 + margin:.2f} or more")
    return Decision(CONTINUE, f"{text} holds 0.5 and reaches {0.5 + margin:.2f}")


def consistency_decision(consistent: int, n: int, *, threshold: float, confidence: float) -> Decision:
    """The judge's consistency (consistent of n items) by its Wilson interval at `confidence`:
    UNINFORMATIVE below `threshold`, INFORMATIVE above it, else CONTINUE."""
    interval = wilson_interval(consistent, n, confidence=confidence)
    if interval["low"] is None:
        return Decision(CONTINUE, "no item judged yet")
    text = f"the consistency interval {_bounds(interval)} of {consistent} of {n}"
    if interval["high"] < threshold:
        return Decision(UNINFORMATIVE, f"{text} lies below {threshold:.2f}: the judge is uninformative")
    if interval["low"] > threshold:
        return Decision(INFORMATIVE, f"{text} lies above {threshold:.2f}: the judge is informative")
    return Decision(CONTINUE, f"{text} holds {threshold:.2f}")
