"""The epsilon ledger: reserve before a DP job, commit what the accountant says it spent,
release the rest. Each service locks the budget row (SELECT ... FOR UPDATE on PostgreSQL; the
IMMEDIATE write transaction on SQLite), so concurrent jobs can never overspend, and is
idempotent per (job, kind): calling it again returns the row already written.

Composition across jobs follows the budget's policy. `sequential`: spent = the sum of commits.
`tight`: the whole DP history is composed by the budget's accountant (privacy.dp.composition); a
job that brings its planned mechanism is admitted when the composed epsilon of everything
committed and reserved plus its plan fits the limit, and its reserve and commit rows record the
composed increase they caused. Either way the epsilon column of each row is the job's own epsilon,
so both figures can always be recomputed from the ledger.
"""
import math
from decimal import ROUND_CEILING, Decimal, InvalidOperation

from django.db import transaction

from jobs.services import db_retried, job_event_record

from ..dp.accountant import AccountingError
from ..dp.composition import Mechanism
from ..events import budget_changed_on_commit
from ..models import EPSILON_DECIMAL_PLACES, LedgerEntry, PrivacyBudget
from ..selectors import BudgetBalance, budget_balance, composed_figures, ledger_history

QUANTUM = Decimal(1).scaleb(-EPSILON_DECIMAL_PLACES)


class BudgetExceeded(Exception):
    """A reservation that would push spent + reserved past the dataset's limit."""


class LedgerError(Exception):
    """A ledger operation that does not fit the job's history (e.g. commit without reserve)."""


def epsilon_to_decimal(value, *, what: str = "epsilon") -> Decimal:
    """A non-negative finite epsilon as a Decimal, rounded UP to the ledger's precision, so a
    recorded spend is never smaller than the accountant's value."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise LedgerError(f"{what} must be a number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise LedgerError(f"{what} must be a finite number >= 0, got {value!r}")
    return amount.quantize(QUANTUM, rounding=ROUND_CEILING)


@transaction.atomic
def budget_reserve(*, job, epsilon, actor, reason: str = "", plan: Mechanism | None = None) -> LedgerEntry:
    """Set aside `epsilon` (the job's target) of the job's dataset budget before it draws any noise.

    `plan`: the mechanism the job will run (sample rate, calibrated noise, planned steps). Under
    a tight budget the plan is composed with everything committed and reserved; without one the
    target epsilon is counted sequentially on top. Raises BudgetExceeded, naming the numbers,
    when what the policy charges would pass the limit.
    """
    budget = _locked_budget(job)
    existing = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.RESERVE).first()
    amount = epsilon_to_decimal(epsilon, what="target epsilon")
    if existing is not None:
        if existing.epsilon != amount:
            raise LedgerError(f"job {job.pk} already reserved epsilon {existing.epsilon}, not {amount}")
        return existing
    if amount == 0:
        raise LedgerError("a reservation must be for a positive epsilon")
    composed = budget_fit_check(budget=budget, amount=amount, asker=f"job {job.pk}", plan=plan)
    mechanism = {}
    if composed is not None:
        mechanism = {"plan": plan.as_record() if plan else None, **composed}
    entry = LedgerEntry.objects.create(
        budget=budget, job=job, kind=LedgerEntry.Kind.RESERVE, actor=actor, epsilon=amount,
        delta=budget.delta, mechanism=mechanism,
        reason=reason or f"reserve the target epsilon of {job.kind} job {job.pk}",
    )
    job_event_record(job_id=job.pk, kind="log", payload={"message": f"reserved epsilon {amount}", "ledger": "reserve"})
    budget_changed_on_commit(dataset_id=budget.dataset_id)
    return entry


def budget_fit_check(*, budget: PrivacyBudget, amount: Decimal, asker: str,
                     remedy: str = "have a compliance officer raise the limit",
                     plan: Mechanism | None = None) -> dict | None:
    """Refuse a new reservation of `amount` (epsilon, at the ledger's precision) that would push
    what the budget's policy charges past its limit: BudgetExceeded, naming the numbers. The one
    home of this rule: budget_reserve calls it under the budget's row lock, a run's check before
    it waits for approval (approval.run_first_stage_check) without one. `asker` names who asks
    ("job 12", "the run"); `remedy` ends the message (the two paths word it differently).

    Under a tight budget the check composes `plan` with the history (or, without a plan, adds
    `amount` on top) and returns the composed figures before and after (for the reserve row);
    under sequential it returns None."""
    balance = budget_balance(budget=budget, with_composed=False)  # tight budgets compose regardless
    if budget.composition != PrivacyBudget.Composition.TIGHT or balance.composed is None:
        if not balance.fits(amount):
            raise BudgetExceeded(
                f"Refused: {asker} asks for epsilon {amount} on dataset '{budget.dataset.name}', whose limit "
                f"is {budget.epsilon_limit}; {balance.spent} is spent and {balance.reserved} reserved by "
                f"running jobs, so at most {balance.left} is left. Ask for {balance.left} or less, or {remedy}."
            )
        return None
    before = balance.composed.with_reserved
    try:
        after = composed_figures(budget=budget, history=ledger_history(budget=budget),
                                 extra=[plan] if plan else []).with_reserved
    except AccountingError as exc:
        raise BudgetExceeded(f"Refused: {asker} cannot be composed with the history of dataset "
                             f"'{budget.dataset.name}': {exc}") from None
    if plan is None:
        after += amount  # no mechanism to compose: counted sequentially, on top
    # Both are certified bounds; PRV's discretisation may bound a longer history a hair lower
    # than a shorter one: keep the larger, so the recorded increase is never negative.
    after = max(after, before)
    if after > budget.epsilon_limit:
        raise BudgetExceeded(
            f"Refused: {asker} asks for epsilon {amount} on dataset '{budget.dataset.name}', whose limit is "
            f"{budget.epsilon_limit} under tight composition ({budget.accountant}, delta {budget.delta:g}); "
            f"everything committed and reserved composes to {before}, and with this job to {after}, "
            f"{after - budget.epsilon_limit} over the limit. Ask for less (fewer steps or more noise), or {remedy}."
        )
    return {"composition": PrivacyBudget.Composition.TIGHT, "accountant": budget.accountant,
            "composed_before": str(before), "composed_after": str(after), "composed_increase": str(after - before)}


@db_retried
@transaction.atomic
def budget_commit(*, job, epsilon: float, delta: float, mechanism: dict, actor, reason: str = "") -> LedgerEntry:
    """Record the epsilon a job actually spent (from the accountant), with the mechanism's
    parameters (sample_rate, noise_multiplier, steps, accountant, ...) so tighter composition
    across jobs can be computed from the history later. Never capped: the ledger records the
    true spend even if it exceeds the reservation."""
    budget = _locked_budget(job)
    existing = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.COMMIT).first()
    if existing is not None:
        return existing
    if not LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.RESERVE).exists():
        raise LedgerError(f"job {job.pk} has no reservation; a DP job must reserve before it trains")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and 0 <= delta < 1):
        raise LedgerError(f"delta must be a probability in [0, 1), got {delta!r}")
    amount = epsilon_to_decimal(epsilon)
    if budget.composition == PrivacyBudget.Composition.TIGHT:
        mechanism = {**mechanism, **_composed_increase(budget=budget, job=job, mechanism=mechanism, amount=amount)}
    entry = LedgerEntry.objects.create(
        budget=budget, job=job, kind=LedgerEntry.Kind.COMMIT, actor=actor, epsilon=amount, delta=float(delta),
        mechanism=mechanism, reason=reason or f"epsilon spent by {job.kind} job {job.pk}",
    )
    job_event_record(job_id=job.pk, kind="log", payload={"message": f"committed epsilon {amount}", "ledger": "commit"})
    budget_changed_on_commit(dataset_id=budget.dataset_id)
    return entry


@db_retried
@transaction.atomic
def budget_release(*, job, actor, reason: str = "") -> LedgerEntry | None:
    """Give back what the job reserved and did not commit (all of it if it never committed).
    None when the job has no reservation."""
    budget = _locked_budget(job)
    existing = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.RELEASE).first()
    if existing is not None:
        return existing
    entries = {entry.kind: entry for entry in LedgerEntry.objects.filter(job=job)}
    reserve = entries.get(LedgerEntry.Kind.RESERVE)
    if reserve is None:
        return None
    committed = entries[LedgerEntry.Kind.COMMIT].epsilon if LedgerEntry.Kind.COMMIT in entries else Decimal(0)
    amount = max(reserve.epsilon - committed, Decimal(0))
    entry = LedgerEntry.objects.create(
        budget=budget, job=job, kind=LedgerEntry.Kind.RELEASE, actor=actor, epsilon=amount, delta=budget.delta,
        reason=reason or f"release what {job.kind} job {job.pk} reserved and did not spend",
    )
    job_event_record(job_id=job.pk, kind="log", payload={"message": f"released epsilon {amount}", "ledger": "release"})
    budget_changed_on_commit(dataset_id=budget.dataset_id)
    return entry


@db_retried
@transaction.atomic
def budget_settle(*, job, epsilon: float, delta: float, mechanism: dict, actor, reason: str = "") -> BudgetBalance:
    """Commit the spend and release the remainder in one transaction; returns the new balance."""
    budget_commit(job=job, epsilon=epsilon, delta=delta, mechanism=mechanism, actor=actor, reason=reason)
    budget_release(job=job, actor=actor)
    return budget_balance(budget=PrivacyBudget.objects.get(dataset_id=job.dataset_id))


def _composed_increase(*, budget: PrivacyBudget, job, mechanism: dict, amount: Decimal) -> dict:
    """What committing `mechanism` adds to the composed spend of the other commits (the increase
    its actual steps caused), for the commit row; the balance itself is recomputed from the
    mechanisms. A commit that names no mechanism adds its epsilon sequentially."""
    others = ledger_history(budget=budget, exclude_job_id=job.pk)
    try:
        before = composed_figures(budget=budget, history=others).spent
        actual = Mechanism.from_record(mechanism)
        others.committed.extend([actual] if actual else [])
        others.unnamed_spent += Decimal(0) if actual else amount
        after = composed_figures(budget=budget, history=others).spent
    except AccountingError as exc:  # the commit is recorded anyway: the spend happened
        return {"composition": PrivacyBudget.Composition.TIGHT, "composed_error": str(exc)}
    return {"composition": PrivacyBudget.Composition.TIGHT, "composed_before": str(before),
            "composed_after": str(after), "composed_increase": str(after - before)}


def _locked_budget(job) -> PrivacyBudget:
    if job.dataset_id is None:
        raise LedgerError(f"job {job.pk} has no dataset, so it has no privacy budget")
    try:
        return PrivacyBudget.objects.select_for_update(of=("self",)).select_related("dataset").get(dataset_id=job.dataset_id)
    except PrivacyBudget.DoesNotExist:
        raise LedgerError(f"dataset {job.dataset_id} has no privacy budget; register it with one") from None


class NonPrivateRefused(Exception):
    """A non-private baseline on a dataset that does not allow them."""


NONPRIVATE_HOW_TO_ALLOW = (" Its owner can allow them at registration (ksg_dataset_add --allow-nonprivate-baselines) "
                           "if a leaky upper bound is wanted for comparison.")


def nonprivate_baseline_check(*, dataset, how_to_allow: bool = True) -> None:
    """Refuse (NonPrivateRefused) a non-private baseline on `dataset` unless it allows them. The
    one home of this rule: budget_nonprivate_release calls it before it records the release, a
    run's check before it waits for approval without the `how_to_allow` sentence."""
    if not dataset.allow_nonprivate_baselines:
        raise NonPrivateRefused(
            f"Refused: dataset '{dataset.name}' does not allow non-private baselines (a model trained on its "
            "raw records with no privacy guarantee)." + (NONPRIVATE_HOW_TO_ALLOW if how_to_allow else "")
        )


@transaction.atomic
def budget_nonprivate_release(*, job, actor, reason: str = "") -> LedgerEntry:
    """Record in the ledger, before it runs, that `job` trains on the raw records with no DP
    guarantee (a baseline). Refused unless the dataset allows non-private baselines. The entry
    carries epsilon 0 in its column but is never counted as spent: no finite epsilon describes
    the job, and `budget_balance` reports it as a non-private release."""
    budget = _locked_budget(job)
    existing = LedgerEntry.objects.filter(job=job, kind=LedgerEntry.Kind.NONPRIVATE).first()
    if existing is not None:
        return existing
    nonprivate_baseline_check(dataset=budget.dataset)
    entry = LedgerEntry.objects.create(
        budget=budget, job=job, kind=LedgerEntry.Kind.NONPRIVATE, actor=actor, epsilon=Decimal(0), delta=1.0,
        mechanism={"dp": False},
        reason=reason or f"non-private release: {job.kind} job {job.pk} trains on the raw records without DP",
    )
    job_event_record(job_id=job.pk, kind="log", payload={"message": "non-private release recorded in the ledger",
                                                         "ledger": "nonprivate"})
    budget_changed_on_commit(dataset_id=budget.dataset_id)
    return entry
