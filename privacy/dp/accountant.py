"""Privacy accountants: the epsilon DP-SGD spends, and the noise that meets a target epsilon.

The mechanism is the one DP-SGD runs at every step: Poisson sampling with rate q (each example
joins the batch independently with probability q), per-example clipping to norm C, and Gaussian
noise of standard deviation sigma * C on the summed gradients. T steps compose T copies of this
Poisson-subsampled Gaussian mechanism; an accountant turns (q, sigma, T, delta) into the
smallest epsilon it can prove, under add-or-remove-one adjacency (as Opacus assumes).

Three accountants, all from Opacus (`opacus.accountants`), selectable per budget:
- "prv" (default): numerical composition of privacy loss random variables (Gopi et al. 2021,
  arXiv:2106.02848). Tight; we report its certified UPPER bound, i.e. the estimate plus at most
  `PRV_EPS_ERROR`, computed at delta minus delta * `PRV_DELTA_ERROR_FRACTION`.
- "rdp": Renyi DP (Mironov 2017; Mironov, Talwar, Zhang 2019) converted to (epsilon, delta).
  A proven upper bound, looser than PRV (5-30 % higher above epsilon ~1, several times higher
  for small epsilon), fast.
- "gdp": Gaussian DP via the central limit theorem (Dong, Roth, Su 2019). An APPROXIMATION, not
  a bound: it under-counts in realistic settings (about 12 % below the exact value at q=0.01,
  sigma=1, T=1000, delta=1e-5); kept for comparison with the literature, not for guarantees.

Every function takes plain numbers and returns plain numbers; nothing here needs Django.
Units: epsilon is dimensionless (a log-likelihood ratio), delta is a probability, sample_rate a
probability, noise_multiplier is sigma in units of the clipping norm, steps a count.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

ACCOUNTANTS = ("prv", "rdp", "gdp")

# PRV reports epsilon_upper = estimate(delta - delta_error) + eps_error; eps_error is the
# additive slack we allow (so a PRV epsilon is never below ~0.01) and sets the mesh size of the
# discretisation: halving it roughly doubles the cost of one evaluation.
PRV_EPS_ERROR = 0.01
PRV_DELTA_ERROR_FRACTION = 1e-3  # delta_error = delta * this (Opacus' own default, made explicit)

# Bounds of the noise search. Above the maximum the noise drowns any gradient; below the minimum
# the guarantee is meaningless and the PRV discretisation grows very large.
MAX_NOISE_MULTIPLIER = 1000.0
MIN_NOISE_MULTIPLIER = 0.1
MAX_BISECTION_STEPS = 100


class AccountingError(ValueError):
    """Inputs an accountant cannot account for; the message says what to change."""


@dataclass(frozen=True)
class Calibration:
    """The noise multiplier chosen for a target, and the epsilon the accountant gives it.

    `epsilon` <= `target_epsilon` always; normally `epsilon` >= target_epsilon * (1 - tolerance)
    (only when even MIN_NOISE_MULTIPLIER stays under the target is it lower: more private).
    """

    noise_multiplier: float
    epsilon: float
    target_epsilon: float
    tolerance: float
    accountant: str


# ---------------------------------------------------------------------------- validation


def _require_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise AccountingError(f"accountant must be one of {', '.join(ACCOUNTANTS)}; got {accountant!r}")


def _require_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AccountingError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise AccountingError(f"{name} must be a finite number; got {value}")
    return value


def _require_sample_rate(sample_rate: object) -> float:
    sample_rate = _require_real("sample_rate", sample_rate)
    if not 0 < sample_rate <= 1:
        raise AccountingError(
            f"sample_rate must be in (0, 1] (expected batch size / dataset size); got {sample_rate}"
        )
    return sample_rate


def _require_noise_multiplier(noise_multiplier: object) -> float:
    noise_multiplier = _require_real("noise_multiplier", noise_multiplier)
    if noise_multiplier <= 0:
        raise AccountingError(
            f"noise_multiplier must be > 0 (noise std / clipping norm); got {noise_multiplier}"
        )
    return noise_multiplier


def _require_steps(name: str, steps: object) -> int:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise AccountingError(f"{name} must be a whole number of steps >= 1; got {steps!r}")
    if steps < 1:
        raise AccountingError(f"{name} must be >= 1; got {steps}")
    return int(steps)


def _require_delta(delta: object) -> float:
    delta = _require_real("delta", delta)
    if not 0 < delta < 1:
        raise AccountingError(
            f"delta must be a probability in (0, 1), typically below 1/dataset size; got {delta}"
        )
    return delta


# ---------------------------------------------------------------------------- epsilon


def _epsilon_unchecked(*, sample_rate: float, noise_multiplier: float, steps: int, delta: float,
                       accountant: str) -> float:
    # Opacus (and torch with it) is imported here, not at module level, so that importing this
    # module for its constants stays cheap in the web process.
    import numpy
    # deferred: opacus loads torch, which a process needs only once it accounts a DP job
    from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant

    # One history entry (sigma, q, T) is T identical steps: the accountants compose it in one
    # go (PRV: one FFT power; RDP: T times the per-step RDP), never step by step.
    history = [(noise_multiplier, sample_rate, steps)]
    if accountant == "prv":
        prv = PRVAccountant()
        prv.history = history
        # q = 1 makes Opacus take log(1 - q) = -inf on purpose, and its domain sizing uses an RDP
        # tail bound that may warn about its largest order (a looser, still safe, domain): noise.
        # Small sigmas overflow in its domain tails; a non-finite result is refused below.
        with numpy.errstate(all="ignore"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the")
            # get_epsilon returns eps_upper (opacus 1.6 prv.py: "return upper bound as we want
            # guarantee"); the error terms are passed explicitly so the reported bound is ours.
            epsilon = prv.get_epsilon(
                delta, eps_error=PRV_EPS_ERROR, delta_error=delta * PRV_DELTA_ERROR_FRACTION
            )
    elif accountant == "rdp":
        rdp = RDPAccountant()
        rdp.history = history
        with warnings.catch_warnings():  # an optimum at the edge of the orders: looser, still safe
            warnings.filterwarnings("ignore", message="Optimal order is the")
            epsilon = rdp.get_epsilon(delta)
    else:
        with warnings.catch_warnings():  # the "experimental" warning is in the module docstring
            warnings.simplefilter("ignore")
            gdp = GaussianAccountant()
        gdp.history = history
        epsilon = gdp.get_epsilon(delta, poisson=True)
    # A PRV upper bound can dip just below 0 for very large noise; epsilon is never negative.
    return max(0.0, float(epsilon))


def epsilon_compute(*, sample_rate: float, noise_multiplier: float, steps: int, delta: float,
                    accountant: str = "prv") -> float:
    """Epsilon (dimensionless) of `steps` DP-SGD steps at (`sample_rate`, `noise_multiplier`).

    `sample_rate` is the Poisson sampling probability q in (0, 1], `noise_multiplier` is sigma
    (noise std / clipping norm) > 0, `delta` a probability in (0, 1). For "prv" the value is
    the certified upper bound (estimate + at most PRV_EPS_ERROR); "rdp" is a looser bound;
    "gdp" is an approximation. Raises AccountingError for invalid inputs or when the accountant
    cannot evaluate them (e.g. a delta so small that floating point error dominates).
    """
    _require_accountant(accountant)
    sample_rate = _require_sample_rate(sample_rate)
    noise_multiplier = _require_noise_multiplier(noise_multiplier)
    steps = _require_steps("steps", steps)
    delta = _require_delta(delta)
    try:
        epsilon = _epsilon_unchecked(sample_rate=sample_rate, noise_multiplier=noise_multiplier,
                                     steps=steps, delta=delta, accountant=accountant)
    except (ValueError, RuntimeError, ArithmeticError) as error:
        raise AccountingError(
            f"the {accountant} accountant cannot evaluate sample_rate={sample_rate}, "
            f"noise_multiplier={noise_multiplier}, steps={steps}, delta={delta}: {error}; "
            "try a larger delta or noise_multiplier, or another accountant"
        ) from error
    if not math.isfinite(epsilon):
        raise AccountingError(
            f"the {accountant} accountant gives an unbounded epsilon for sample_rate={sample_rate}, "
            f"noise_multiplier={noise_multiplier}, steps={steps}, delta={delta}; add noise"
        )
    return epsilon


def epsilon_curve(*, sample_rate: float, noise_multiplier: float, steps_list: list[int],
                  delta: float, accountant: str = "prv") -> list[float]:
    """Epsilon after each step count in `steps_list` (strictly increasing), as a training loop
    reports it: element i is the epsilon spent once steps_list[i] steps have run.

    Cost: "rdp" computes the per-step RDP once and scales it by T (RDP composes additively),
    so the whole curve costs about one call; "gdp" is closed form per point; "prv" runs one
    FFT composition per point (about 0.02-0.5 s each for realistic q, sigma, T, growing with
    epsilon; measured ~0.1 s, so 200 points ~20 s), so pass the steps at which an event is
    actually emitted, or compute each point as its step completes.

    The PRV bounds carry discretisation noise, so the curve is made non-decreasing by a
    running maximum: the maximum of upper bounds at T' <= T still bounds epsilon(T), because
    the true epsilon never decreases with more steps.
    """
    _require_accountant(accountant)
    sample_rate = _require_sample_rate(sample_rate)
    noise_multiplier = _require_noise_multiplier(noise_multiplier)
    delta = _require_delta(delta)
    steps_list = [_require_steps("each entry of steps_list", steps) for steps in steps_list]
    if any(later <= earlier for earlier, later in zip(steps_list, steps_list[1:])):
        raise AccountingError("steps_list must be strictly increasing (step counts as training runs)")
    if accountant == "rdp":
        epsilons = _rdp_curve(sample_rate=sample_rate, noise_multiplier=noise_multiplier,
                              steps_list=steps_list, delta=delta)
    else:
        epsilons = [
            epsilon_compute(sample_rate=sample_rate, noise_multiplier=noise_multiplier,
                            steps=steps, delta=delta, accountant=accountant)
            for steps in steps_list
        ]
    running_max, curve = 0.0, []
    for epsilon in epsilons:
        running_max = max(running_max, epsilon)
        curve.append(running_max)
    return curve


def _rdp_curve(*, sample_rate: float, noise_multiplier: float, steps_list: list[int],
               delta: float) -> list[float]:
    from opacus.accountants import RDPAccountant  # deferred (as above)
    from opacus.accountants.analysis import rdp as rdp_analysis  # deferred (as above)

    # Same orders and conversion as RDPAccountant.get_epsilon; RDP of T steps = T * RDP of one.
    orders = RDPAccountant.DEFAULT_ALPHAS
    rdp_one_step = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=orders
    )
    with warnings.catch_warnings():  # as in _epsilon_unchecked
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return [
            max(0.0, float(rdp_analysis.get_privacy_spent(orders=orders, rdp=rdp_one_step * steps,
                                                          delta=delta)[0]))
            for steps in steps_list
        ]


# ---------------------------------------------------------------------------- noise search


def noise_calibrate(*, sample_rate: float, steps: int, delta: float, target_epsilon: float,
                    accountant: str = "prv", tolerance: float = 0.01) -> Calibration:
    """The noise multiplier sigma whose epsilon after `steps` steps is just under `target_epsilon`.

    The math. For fixed (q, T, delta), epsilon(sigma) is decreasing in sigma: more noise, a
    privacy loss distribution concentrated closer to 0. So the sigma we want is the point where
    epsilon(sigma) crosses the target, and a bracket [sigma_lo, sigma_hi] with
    epsilon(sigma_lo) > target >= epsilon(sigma_hi) contains it:
      1. bracket: start at sigma = 1; double sigma_hi until epsilon(sigma_hi) <= target (stop
         with AccountingError at MAX_NOISE_MULTIPLIER), or halve sigma_lo until
         epsilon(sigma_lo) > target (stop at MIN_NOISE_MULTIPLIER and return it);
      2. bisect: evaluate the midpoint and keep the half whose ends still straddle the target,
         until the upper end's epsilon is within `tolerance` (relative) of the target, i.e.
         target * (1 - tolerance) <= epsilon(sigma_hi) <= target.
    We return sigma_hi, the end on the safe side, so the returned epsilon NEVER exceeds the
    target (asserted). Each step halves the bracket; about 10-15 accountant calls in all.

    `sample_rate` q in (0, 1], `delta` a probability, `target_epsilon` > 0 dimensionless,
    `tolerance` in (0, 1) relative. Raises AccountingError for invalid inputs or a target no
    noise up to MAX_NOISE_MULTIPLIER reaches (PRV cannot certify targets near PRV_EPS_ERROR).
    """
    _require_accountant(accountant)
    sample_rate = _require_sample_rate(sample_rate)
    steps = _require_steps("steps", steps)
    delta = _require_delta(delta)
    target_epsilon = _require_real("target_epsilon", target_epsilon)
    if target_epsilon <= 0:
        raise AccountingError(f"target_epsilon must be > 0; got {target_epsilon}")
    tolerance = _require_real("tolerance", tolerance)
    if not 0 < tolerance < 1:
        raise AccountingError(f"tolerance must be in (0, 1) (relative, e.g. 0.01); got {tolerance}")

    def epsilon_at(noise_multiplier: float) -> float:
        return epsilon_compute(sample_rate=sample_rate, noise_multiplier=noise_multiplier,
                               steps=steps, delta=delta, accountant=accountant)

    def calibration(noise_multiplier: float, epsilon: float) -> Calibration:
        assert epsilon <= target_epsilon, (noise_multiplier, epsilon, target_epsilon)
        return Calibration(noise_multiplier=noise_multiplier, epsilon=epsilon,
                           target_epsilon=target_epsilon, tolerance=tolerance, accountant=accountant)

    sigma_lo, sigma_hi, epsilon_hi = _bracket(epsilon_at, target_epsilon, accountant)
    if sigma_lo is None:
        return calibration(sigma_hi, epsilon_hi)  # target looser than any sensible noise
    for _ in range(MAX_BISECTION_STEPS):
        if epsilon_hi >= target_epsilon * (1 - tolerance):
            break
        sigma_mid = (sigma_lo + sigma_hi) / 2
        if not sigma_lo < sigma_mid < sigma_hi:
            break  # the bracket is down to float resolution; sigma_hi is still safe
        epsilon_mid = _epsilon_or_inf(epsilon_at, sigma_mid)
        if epsilon_mid > target_epsilon:
            sigma_lo = sigma_mid
        else:
            sigma_hi, epsilon_hi = sigma_mid, epsilon_mid
    return calibration(sigma_hi, epsilon_hi)


def _bracket(epsilon_at: Callable[[float], float], target_epsilon: float,
             accountant: str) -> tuple[float | None, float, float]:
    """(sigma_lo, sigma_hi, epsilon(sigma_hi)) with epsilon(sigma_lo) > target >= epsilon(sigma_hi),
    sigma_hi / sigma_lo <= 2; sigma_lo is None when even MIN_NOISE_MULTIPLIER meets the target."""
    sigma_hi, epsilon_hi = 1.0, _epsilon_or_inf(epsilon_at, 1.0)
    sigma_lo = None
    while epsilon_hi > target_epsilon:  # too little noise: double it
        if sigma_hi >= MAX_NOISE_MULTIPLIER:
            if not math.isfinite(epsilon_hi):
                epsilon_at(sigma_hi)  # the accountant fails at any noise: raise its own reason
            floor_note = (
                f" (the prv accountant adds up to {PRV_EPS_ERROR} to every epsilon it certifies)"
                if accountant == "prv" else ""
            )
            raise AccountingError(
                f"target_epsilon={target_epsilon} is unreachable: even noise_multiplier="
                f"{MAX_NOISE_MULTIPLIER:g} gives epsilon {epsilon_hi:.4g}{floor_note}; raise the "
                "target, or lower the steps or sample_rate"
            )
        sigma_lo = sigma_hi
        sigma_hi = min(2 * sigma_hi, MAX_NOISE_MULTIPLIER)
        epsilon_hi = _epsilon_or_inf(epsilon_at, sigma_hi)
    while sigma_lo is None:  # sigma = 1 already meets the target: halve until it does not
        if sigma_hi <= MIN_NOISE_MULTIPLIER:
            return None, sigma_hi, epsilon_hi
        candidate = max(sigma_hi / 2, MIN_NOISE_MULTIPLIER)
        epsilon = _epsilon_or_inf(epsilon_at, candidate)
        if epsilon > target_epsilon:
            sigma_lo = candidate
        else:
            sigma_hi, epsilon_hi = candidate, epsilon
    return sigma_lo, sigma_hi, epsilon_hi


def _epsilon_or_inf(epsilon_at: Callable[[float], float], noise_multiplier: float) -> float:
    # Where an accountant cannot evaluate (e.g. GDP beyond epsilon 500, PRV domains too large for
    # tiny noise) we treat the point as over budget: the search then moves towards more noise,
    # the safe direction, and a point it keeps always had a real epsilon.
    try:
        return epsilon_at(noise_multiplier)
    except AccountingError:
        return math.inf


# ---------------------------------------------------------------------------- provenance


def library_versions() -> dict[str, str]:
    """Versions of the libraries that computed an epsilon, to store next to each ledger commit
    (numpy and scipy carry the PRV and RDP numerics, so they are recorded too)."""
    return {name: metadata.version(name) for name in ("opacus", "torch", "numpy", "scipy")}
