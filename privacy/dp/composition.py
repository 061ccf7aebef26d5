"""Tight composition of every DP job on one dataset: the epsilon of the whole history at once.

Sequential composition adds the jobs' epsilons (and their deltas): always valid, and loose. A
dataset's DP history is a list of DP-SGD runs, each `steps` copies of the Poisson-subsampled
Gaussian mechanism at its own (sample_rate q, noise_multiplier sigma); accounting the whole list
at one delta composes their privacy loss distributions exactly (PRV: Gopi et al. 2021), or adds
their Renyi curves (RDP), which is far below the sum after a few jobs.

The accountants are Opacus' (the ones the budget already uses for each job): PRVAccountant and
RDPAccountant take a heterogeneous history [(sigma, q, steps), ...]. Runs with the same (q, sigma)
are merged into one entry of summed steps first: T1 steps then T2 steps of one mechanism are
exactly T1 + T2 steps of it, and Opacus' PRV cost grows with the number of distinct entries.
GDP is refused: it is an approximation, not a bound, and a budget must not under-count.

`epsilon_independent` computes the same figure with Google's dp-accounting (PLDAccountant over a
ComposedDpEvent of PoissonSampledDpEvent(GaussianDpEvent)), a separate implementation by separate
authors, for the privacy statement and the tests to set beside the platform's figure.

Plain numbers in, plain numbers out; nothing here needs Django. Units as in accountant.py.
"""
from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata

from .accountant import (
    PRV_DELTA_ERROR_FRACTION,
    PRV_EPS_ERROR,
    AccountingError,
    _require_delta,
    _require_noise_multiplier,
    _require_sample_rate,
    _require_steps,
    library_versions,
)

COMPOSABLE_ACCOUNTANTS = ("prv", "rdp")
# dp-accounting's PLD discretisation of the privacy loss (its pessimistic estimate is an upper
# bound for any interval; 1e-4 keeps it within ~0.1% of the exact value at epsilon 1-20).
PLD_VALUE_DISCRETIZATION = 1e-4


@dataclass(frozen=True, order=True)
class Mechanism:
    """One DP-SGD run: `steps` Poisson-subsampled Gaussian steps at rate `sample_rate` (of records,
    or of persons where the dataset names a privacy unit) and noise `noise_multiplier` (sigma)."""

    sample_rate: float
    noise_multiplier: float
    steps: int

    def __post_init__(self):
        object.__setattr__(self, "sample_rate", _require_sample_rate(self.sample_rate))
        object.__setattr__(self, "noise_multiplier", _require_noise_multiplier(self.noise_multiplier))
        object.__setattr__(self, "steps", _require_steps("steps", self.steps))

    @classmethod
    def from_record(cls, record: Mapping | None) -> Mechanism | None:
        """The mechanism a ledger row's JSON names ({"sample_rate", "noise_multiplier", "steps"}),
        or None when it names none (a row written before mechanisms were kept, or a test row):
        such a row is then counted sequentially, on top of the composed figure."""
        if not record or any(record.get(key) in (None, "", 0) for key in ("sample_rate", "noise_multiplier", "steps")):
            return None
        try:
            return cls(float(record["sample_rate"]), float(record["noise_multiplier"]), int(record["steps"]))
        except (TypeError, ValueError, AccountingError):
            return None

    def as_record(self) -> dict:
        return {"sample_rate": self.sample_rate, "noise_multiplier": self.noise_multiplier, "steps": self.steps}


def mechanisms_merged(mechanisms: Iterable[Mechanism]) -> tuple[Mechanism, ...]:
    """The same history with runs of equal (q, sigma) merged (steps summed), in a fixed order:
    an exact rewrite (composition of one mechanism T1 then T2 times is T1 + T2 times)."""
    steps: dict[tuple[float, float], int] = {}
    for mechanism in mechanisms:
        key = (mechanism.sample_rate, mechanism.noise_multiplier)
        steps[key] = steps.get(key, 0) + mechanism.steps
    return tuple(sorted(Mechanism(q, sigma, t) for (q, sigma), t in steps.items()))


def epsilon_composed(*, mechanisms: Iterable[Mechanism], delta: float, accountant: str = "prv") -> float:
    """Epsilon (dimensionless) of all `mechanisms` composed, at one `delta` (a probability).

    "prv": the certified upper bound (estimate + at most PRV_EPS_ERROR, at delta minus
    delta * PRV_DELTA_ERROR_FRACTION), as for one job; "rdp": the RDP bound. 0.0 for no
    mechanism. Raises AccountingError for "gdp" (an approximation), invalid inputs, or a history
    the accountant cannot evaluate. Results are cached per (history, delta, accountant).
    """
    if accountant not in COMPOSABLE_ACCOUNTANTS:
        raise AccountingError(f"composition needs an accountant whose epsilon is a bound: one of "
                              f"{', '.join(COMPOSABLE_ACCOUNTANTS)}; got {accountant!r}")
    delta = _require_delta(delta)
    history = mechanisms_merged(mechanisms)
    if not history:
        return 0.0
    return _composed_cached(history, delta, accountant)


@functools.lru_cache(maxsize=512)
def _composed_cached(history: tuple[Mechanism, ...], delta: float, accountant: str) -> float:
    import numpy  # deferred, as in accountant.py: opacus loads torch
    from opacus.accountants import PRVAccountant, RDPAccountant

    opacus_history = [(m.noise_multiplier, m.sample_rate, m.steps) for m in history]
    try:
        with numpy.errstate(all="ignore"), warnings.catch_warnings():
            # the same harmless warnings accountant._epsilon_unchecked silences
            warnings.filterwarnings("ignore", message="Optimal order is the")
            if accountant == "prv":
                prv = PRVAccountant()
                prv.history = opacus_history
                epsilon = prv.get_epsilon(delta, eps_error=PRV_EPS_ERROR,
                                          delta_error=delta * PRV_DELTA_ERROR_FRACTION)
            else:
                rdp = RDPAccountant()
                rdp.history = opacus_history
                epsilon = rdp.get_epsilon(delta)
    except (ValueError, RuntimeError, ArithmeticError) as error:
        raise AccountingError(f"the {accountant} accountant cannot compose {len(history)} mechanism(s) at "
                              f"delta={delta}: {error}; try a larger delta or another accountant") from error
    if not math.isfinite(epsilon):
        raise AccountingError(f"the {accountant} accountant gives an unbounded composed epsilon at delta={delta}")
    return max(0.0, float(epsilon))


def epsilon_independent(*, mechanisms: Iterable[Mechanism], delta: float) -> float:
    """The same composition computed by Google's dp-accounting: PLDAccountant (pessimistic
    estimate, an upper bound) over ComposedDpEvent([SelfComposedDpEvent(PoissonSampledDpEvent(q,
    GaussianDpEvent(sigma)), steps), ...]) under add-or-remove adjacency, at `delta`."""
    import dp_accounting  # deferred: only the statement and the tests need the check
    from dp_accounting.pld import pld_privacy_accountant

    delta = _require_delta(delta)
    history = mechanisms_merged(mechanisms)
    if not history:
        return 0.0
    event = dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(m.sample_rate, dp_accounting.GaussianDpEvent(m.noise_multiplier)),
            m.steps)
        for m in history
    ])
    pld = pld_privacy_accountant.PLDAccountant(value_discretization_interval=PLD_VALUE_DISCRETIZATION)
    pld.compose(event)
    return max(0.0, float(pld.get_epsilon(delta)))


def composition_versions() -> dict[str, str]:
    """Versions of what computed a composed figure and its independent check."""
    return dict(_versions())


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:  # installed packages do not change under a process
    versions = library_versions()
    try:
        versions["dp-accounting"] = metadata.version("dp-accounting")
    except metadata.PackageNotFoundError:
        pass
    return tuple(versions.items())
