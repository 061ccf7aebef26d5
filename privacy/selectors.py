"""Reads of the privacy app. Balances are derived from the ledger, never stored."""
import json
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from .dp.accountant import AccountingError, epsilon_compute
from .dp.composition import Mechanism, composition_versions, epsilon_composed
from .models import EPSILON_DECIMAL_PLACES, LedgerEntry, PrivacyBudget, PrivateDataset

CANARIES_FILE = "canaries.jsonl"  # beside train.jsonl: the planted secrets, for the exposure measurement
AUDIT_CANARIES_FILE = "audit_canaries.jsonl"  # beside train.jsonl: the audit canaries and their coin flips
QUANTUM = Decimal(1).scaleb(-EPSILON_DECIMAL_PLACES)


@dataclass(frozen=True)
class ComposedFigures:
    """The dataset's DP history accounted at once (privacy.dp.composition), at the budget's delta.

    Rows that name no mechanism (commits written before mechanisms were kept, reservations made
    without a plan) cannot be composed: they are added sequentially on top, epsilon and delta,
    so the figure is never below what the ledger says was spent."""

    spent: Decimal            # commits composed, plus the sequential terms; rounded up
    with_reserved: Decimal    # also the open reservations' planned mechanisms (>= spent)
    delta: float              # the budget's delta plus the deltas of the sequential terms
    accountant: str
    mechanisms: int           # commits composed
    sequential_terms: int     # rows added on top because they name no mechanism
    versions: dict


@dataclass(frozen=True)
class BudgetBalance:
    """Where a dataset's epsilon stands (epsilon is dimensionless; delta a probability).

    `spent`, `reserved` and `left` are what the dataset's composition policy charges: the sums
    under "sequential", the composed figures under "tight" (the sums again if the accountant
    cannot compose the history: they are always a valid bound). Both figures are kept beside
    each other: `sequential_spent` and `composed` (None when it could not be computed; then
    `composed_error` says why)."""

    limit: Decimal
    spent: Decimal      # charged by the policy
    reserved: Decimal   # set aside by jobs that have not settled yet, as the policy charges it
    left: Decimal       # limit - spent - reserved (negative only if a commit exceeded its reservation)
    delta_spent: float  # sum of the deltas of the commits (sequential composition)
    commits: int
    nonprivate_releases: int = 0  # baselines trained on the raw records: no DP guarantee at all
    composition: str = "sequential"
    sequential_spent: Decimal = Decimal(0)     # sum of commits
    sequential_reserved: Decimal = Decimal(0)  # sum of open reservations (less what they committed)
    composed: ComposedFigures | None = None
    composed_error: str = ""

    def fits(self, epsilon: Decimal) -> bool:
        """Whether a new reservation of `epsilon`, counted on top of what the policy charges,
        keeps the budget within its limit (privacy.services.budget_fit_check refuses what does
        not fit; under "tight" it composes the new job's plan instead where it has one)."""
        return self.spent + self.reserved + epsilon <= self.limit


@dataclass
class LedgerHistory:
    """A budget's ledger rows sorted for both accountings (built by ledger_history)."""

    sequential_spent: Decimal = Decimal(0)
    sequential_reserved: Decimal = Decimal(0)
    delta_spent: float = 0.0
    commits: int = 0
    nonprivate: int = 0
    committed: list = field(default_factory=list)        # Mechanism of each commit that names one
    planned: list = field(default_factory=list)          # Mechanism of each open reservation's plan
    unnamed_spent: Decimal = Decimal(0)                  # commits naming no mechanism
    unnamed_delta: float = 0.0
    unnamed_reserved: Decimal = Decimal(0)               # open reservations without a plan
    unnamed_terms: int = 0


def ledger_history(*, budget: PrivacyBudget, exclude_job_id: int | None = None) -> LedgerHistory:
    """The budget's ledger read once: sums, and the mechanisms of commits and open plans."""
    per_job: dict[int, dict[str, LedgerEntry]] = {}
    rows = LedgerEntry.objects.filter(budget=budget).only("job_id", "kind", "epsilon", "delta", "mechanism")
    for entry in rows:
        if entry.job_id != exclude_job_id:
            per_job.setdefault(entry.job_id, {})[entry.kind] = entry
    history = LedgerHistory()
    for entries in per_job.values():
        history.nonprivate += LedgerEntry.Kind.NONPRIVATE in entries
        commit = entries.get(LedgerEntry.Kind.COMMIT)
        if commit is not None:
            history.sequential_spent += commit.epsilon
            history.delta_spent += commit.delta
            history.commits += 1
            mechanism = Mechanism.from_record(commit.mechanism)
            if mechanism is not None:
                history.committed.append(mechanism)
            elif commit.epsilon > 0:
                history.unnamed_spent += commit.epsilon
                history.unnamed_delta += commit.delta
                history.unnamed_terms += 1
        reserve = entries.get(LedgerEntry.Kind.RESERVE)
        if reserve is not None and LedgerEntry.Kind.RELEASE not in entries:
            # Unsettled: the whole reservation stays set aside, less anything already committed.
            open_epsilon = max(reserve.epsilon - (commit.epsilon if commit else Decimal(0)), Decimal(0))
            history.sequential_reserved += open_epsilon
            plan = Mechanism.from_record((reserve.mechanism or {}).get("plan"))
            if commit is not None:
                continue  # its steps are committed: the actual mechanism replaces the plan
            if plan is not None:
                history.planned.append(plan)
            elif open_epsilon > 0:
                history.unnamed_reserved += open_epsilon
                history.unnamed_terms += 1
    return history


def epsilon_ceiling(value: float) -> Decimal:
    """An accountant's epsilon at the ledger's precision, rounded up (never under-counted)."""
    return Decimal(repr(float(value))).quantize(QUANTUM, rounding=ROUND_CEILING)


def composed_figures(*, budget: PrivacyBudget, history: LedgerHistory, extra: list | None = None) -> ComposedFigures:
    """Compose the history (plus `extra` planned mechanisms) at the budget's delta with its
    accountant; raises AccountingError when the accountant cannot."""
    spent = epsilon_ceiling(epsilon_composed(mechanisms=history.committed, delta=budget.delta,
                                             accountant=budget.accountant))
    everything = history.committed + history.planned + list(extra or [])
    with_reserved = epsilon_ceiling(epsilon_composed(mechanisms=everything, delta=budget.delta,
                                                     accountant=budget.accountant))
    spent += history.unnamed_spent
    # PRV upper bounds carry discretisation noise; more mechanisms never lower the true epsilon.
    with_reserved = max(with_reserved + history.unnamed_spent + history.unnamed_reserved, spent)
    return ComposedFigures(spent=spent, with_reserved=with_reserved, delta=budget.delta + history.unnamed_delta,
                           accountant=budget.accountant, mechanisms=len(history.committed),
                           sequential_terms=history.unnamed_terms, versions=composition_versions())


def budget_balance(*, budget: PrivacyBudget, with_composed: bool = True) -> BudgetBalance:
    """The budget's balance from its ledger. `with_composed=False` skips the accountant (the
    composed figure is then None): for a sequential budget's admission, which needs only sums."""
    history = ledger_history(budget=budget)
    composed, error = None, ""
    try:
        if with_composed or budget.composition == PrivacyBudget.Composition.TIGHT:
            composed = composed_figures(budget=budget, history=history)
        else:
            error = "not computed for this check"
    except AccountingError as exc:
        error = str(exc)
    spent, reserved = history.sequential_spent, history.sequential_reserved
    if budget.composition == PrivacyBudget.Composition.TIGHT and composed is not None:
        spent, reserved = composed.spent, composed.with_reserved - composed.spent
    return BudgetBalance(
        budget.epsilon_limit, spent, reserved, budget.epsilon_limit - spent - reserved, history.delta_spent,
        history.commits, history.nonprivate, composition=budget.composition,
        sequential_spent=history.sequential_spent, sequential_reserved=history.sequential_reserved,
        composed=composed, composed_error=error,
    )


def budget_figures(*, balance: BudgetBalance) -> dict:
    """Both figures of a balance side by side, JSON-ready, for every place the budget is shown
    (pages, dashboard, API, ksg_epsilon): the sum at the sum of the deltas, the composed figure
    at the budget's delta with its accountant and library versions, the policy charging one of
    them, and one line of text saying all of it."""
    composed = balance.composed
    sequential = {"epsilon": _text(balance.sequential_spent), "delta": balance.delta_spent,
                  "reserved": _text(balance.sequential_reserved)}
    figures = {"policy": balance.composition, "sequential": sequential, "composed": None,
               "composed_error": balance.composed_error or None,
               "versions": composed.versions if composed else composition_versions()}
    line = f"sequential {sequential['epsilon']} (δ {balance.delta_spent:g})"
    if composed is not None:
        figures["composed"] = {"epsilon": _text(composed.spent), "with_reserved": _text(composed.with_reserved),
                               "delta": composed.delta, "accountant": composed.accountant,
                               "mechanisms": composed.mechanisms, "sequential_terms": composed.sequential_terms}
        line += f", composed {_text(composed.spent)} ({composed.accountant.upper()}, δ {composed.delta:g}"
        line += f"; {composed.sequential_terms} row(s) without a mechanism added on top)" if composed.sequential_terms else ")"
    else:
        line += f", composed: not computed ({balance.composed_error})"
    versions = ", ".join(f"{name} {version}" for name, version in figures["versions"].items())
    charged = "composed figure" if balance.composition == PrivacyBudget.Composition.TIGHT and composed else "sum"
    figures["text"] = f"{line}; the {balance.composition} policy charges the {charged}"
    figures["versions_text"] = versions
    return figures


def _text(value: Decimal) -> str:
    return f"{value.normalize():f}"


def dataset_balance(*, dataset: PrivateDataset) -> BudgetBalance:
    return budget_balance(budget=dataset.budget)


def ledger_for(*, dataset: PrivateDataset) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(budget__dataset=dataset).select_related("job", "actor").order_by("created_at", "id")


def dataset_dir(*, dataset: PrivateDataset) -> Path:
    """The dataset's directory under KSG_PRIVATE_DIR (client side only)."""
    root = Path(settings.KSG_PRIVATE_DIR).resolve()
    path = (root / dataset.path).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"dataset {dataset.pk} points outside the private data directory")
    return path


def dataset_records(*, dataset: PrivateDataset, split: str) -> list[dict]:
    """The normalised records {"instruction", "response"} of the `train` or `heldout` split."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    path = dataset_dir(dataset=dataset) / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: this process cannot see the private data of dataset '{dataset.name}' "
            f"(is KSG_PRIVATE_DIR mounted here? only client-side workers have it)"
        )
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def dataset_canaries(*, dataset: PrivateDataset) -> list[dict]:
    """The canaries planted at registration ({"instruction", "response", "secret"}), or []."""
    if not dataset.canary_count:
        return []
    path = dataset_dir(dataset=dataset) / CANARIES_FILE
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def dataset_audit_canaries(*, dataset: PrivateDataset) -> list[dict]:
    """The audit canaries drawn at registration ({"instruction", "response", "secret",
    "included"}: included = went into the training split), or []. Client side only."""
    if not dataset.audit_canary_count:
        return []
    with (dataset_dir(dataset=dataset) / AUDIT_CANARIES_FILE).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def release_claim(*, job_ids: list[int], delta: float | None = None) -> dict | None:
    """What the ledger says of a model trained by these jobs (a run's stages): {"dp": False} for
    a non-private release; {"dp": True, "epsilon", "delta", "accountant", "mechanism"} for DP-SGD
    (epsilon: the commits' sum at their delta), plus "epsilon_at_delta" at `delta` when given,
    recomputed by the same accountant from the committed mechanisms (sequential composition over
    commits, each at delta / commits); None when nothing was released."""
    entries = list(LedgerEntry.objects.filter(job_id__in=job_ids).order_by("created_at", "id"))
    if any(entry.kind == LedgerEntry.Kind.NONPRIVATE for entry in entries):
        return {"dp": False}
    commits = [entry for entry in entries if entry.kind == LedgerEntry.Kind.COMMIT]
    if not commits:
        return None
    mechanisms = [entry.mechanism or {} for entry in commits]
    claim = {"dp": True, "epsilon": sum(float(entry.epsilon) for entry in commits),
             "delta": sum(entry.delta for entry in commits), "accountant": mechanisms[-1].get("accountant"),
             "mechanism": mechanisms[-1], "epsilon_unit": commits[-1].budget.dataset.epsilon_unit}
    if delta is not None:
        share = delta / len(commits)
        at_delta = []
        for mechanism in mechanisms:
            if not mechanism.get("steps"):  # a commit of no step (a job that noised nothing) spent nothing
                continue
            at_delta.append(epsilon_compute(sample_rate=mechanism["sample_rate"],
                                            noise_multiplier=mechanism["noise_multiplier"], steps=mechanism["steps"],
                                            delta=share, accountant=mechanism.get("accountant") or "prv"))
        claim["epsilon_at_delta"] = {"delta": delta, "epsilon": sum(at_delta)}
    return claim


def job_epsilon_committed(*, job_id: int) -> tuple[Decimal, float] | None:
    """(epsilon, delta) the ledger committed for a job, or None."""
    entry = LedgerEntry.objects.filter(job_id=job_id, kind=LedgerEntry.Kind.COMMIT).first()
    return None if entry is None else (entry.epsilon, entry.delta)


def dataset_unit_summary(dataset) -> str:
    """One line on what the dataset's epsilon protects and its duplicates, for the pages and CLI."""
    if dataset.privacy_unit:
        unit = (f"privacy unit: {dataset.privacy_unit} ({dataset.train_units} in the training split): "
                f"epsilon is {dataset.epsilon_unit}, each person's records protected together")
    else:
        unit = ("privacy unit: the record (no privacy unit field named): epsilon is per record, and a person with "
                "k records is protected only by group privacy, about k times epsilon")
    if not dataset.duplicate_records:
        return unit + "; no exact duplicates"
    fate = "left out" if dataset.duplicates_dropped else "kept, each counted under its unit"
    return unit + f"; {dataset.duplicate_records} exact duplicate(s) {fate}"



def dataset_identity_summary(dataset) -> str:
    """One line on the fields naming the person a record is about, for the pages and CLI."""
    if dataset.identifying_fields:
        return f"identifying fields: {', '.join(dataset.identifying_fields)}"
    return "identifying fields: none: the name-reconstruction attack relies on the PII detector alone"
