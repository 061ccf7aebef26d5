"""Reads for the compliance side: every budget at a glance, the epsilon burn-down, runs in
flight and awaiting approval, the ledger and the audit trail filtered, and their exports.

Everything is read from the database (balances from the ledger through budget_balance), so the
dashboard, the exports and the printed report agree with the ledger by construction.
"""
import csv
import io
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Iterable, Iterator

from django.db.models import Max, OuterRef, QuerySet, Subquery

from jobs.kinds import job_kind_spec
from jobs.models import Job, JobEvent

from .models import EPSILON_DECIMAL_PLACES, AuditEntry, LedgerEntry, PrivacyBudget, PrivateDataset
from .dp.accountant import AccountingError
from .dp.composition import Mechanism, epsilon_composed
from .selectors import budget_balance, budget_figures, epsilon_ceiling

QUANTUM = Decimal(1).scaleb(-EPSILON_DECIMAL_PLACES)
WARN_FRACTION = Decimal("0.8")  # a budget used beyond this share of its limit is shown as nearly exhausted
ACTIVE_STATUSES = (Job.Status.AWAITING_APPROVAL, Job.Status.QUEUED, Job.Status.RUNNING)

LEDGER_COLUMNS = ("id", "created_at", "dataset_id", "dataset", "budget_id", "job_id", "job_kind", "run_id",
                  "kind", "epsilon", "epsilon_unit", "delta", "actor", "reason", "mechanism")
AUDIT_COLUMNS = ("id", "created_at", "action", "dataset_id", "dataset", "job_id", "actor", "comment", "details")


@dataclass(frozen=True)
class TrailFilter:
    """What a compliance officer narrows the ledger or the audit trail to; None: no condition.
    Dates are whole days in the server's time zone, both ends included."""

    dataset: PrivateDataset | None = None
    user: Any = None  # the actor of the entry
    date_from: date | None = None
    date_to: date | None = None
    kind: str | None = None  # a LedgerEntry.Kind for the ledger, an AuditEntry.Action for the audit trail

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset.name if self.dataset else None,
                "user": self.user.get_username() if self.user else None,
                "date_from": self.date_from.isoformat() if self.date_from else None,
                "date_to": self.date_to.isoformat() if self.date_to else None, "kind": self.kind}


# -- budgets, burn-down and runs (the dashboard) ---------------------------------------------

def budget_rows() -> list[dict[str, Any]]:
    """One row per dataset: limit, spent, reserved, left (epsilon, as decimal strings), the
    non-private releases, the delta and the approval threshold."""
    rows = []
    for budget in PrivacyBudget.objects.select_related("dataset", "dataset__owner").order_by("dataset__name"):
        balance = budget_balance(budget=budget)
        dataset = budget.dataset
        rows.append({
            "id": dataset.pk, "name": dataset.name, "owner": dataset.owner.get_username(),
            "limit": _epsilon(balance.limit), "spent": _epsilon(balance.spent), "reserved": _epsilon(balance.reserved),
            "left": _epsilon(balance.left), "used": _epsilon(balance.spent + balance.reserved),
            "warn_at": _epsilon(balance.limit * WARN_FRACTION), "commits": balance.commits, "delta": budget.delta,
            "delta_spent": balance.delta_spent, "nonprivate_releases": balance.nonprivate_releases,
            "accountant": budget.accountant, "epsilon_unit": dataset.epsilon_unit,
            "composition": budget.composition, "figures": budget_figures(balance=balance)["text"],
            "approval_threshold": None if dataset.approval_epsilon_threshold is None
            else _epsilon(dataset.approval_epsilon_threshold),
        })
    return rows


def burndown(*, dataset: PrivateDataset | None = None) -> list[dict[str, Any]]:
    """Per dataset: after each commit, from 0 at the budget's creation, the cumulative committed
    epsilon (the sum) and the commits so far composed at the budget's delta by its accountant
    (rows naming no mechanism added on top; None if the accountant cannot compose them):
    {"time": ISO 8601, "spent": decimal string, "composed": decimal string or None}; the limit
    and the policy that charges one of the two."""
    budgets = PrivacyBudget.objects.select_related("dataset").order_by("dataset__name")
    if dataset is not None:
        budgets = budgets.filter(dataset=dataset)
    commits: dict[int, list[tuple]] = {}
    entries = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.COMMIT, budget__in=budgets).order_by("created_at", "id")
    for row in entries.values_list("budget_id", "created_at", "epsilon", "mechanism"):
        commits.setdefault(row[0], []).append(row[1:])
    series = []
    for budget in budgets:
        zero = _epsilon(Decimal(0))
        spent, points = Decimal(0), [{"time": budget.created_at.isoformat(), "spent": zero, "composed": zero}]
        mechanisms, unnamed = [], Decimal(0)
        for created_at, epsilon, mechanism in commits.get(budget.pk, []):
            spent += epsilon
            named = Mechanism.from_record(mechanism)
            if named is None:
                unnamed += epsilon  # a commit naming no mechanism: on top, as budget_balance counts it
            else:
                mechanisms.append(named)
            points.append({"time": created_at.isoformat(), "spent": _epsilon(spent),
                           "composed": _composed_text(budget, mechanisms, unnamed)})
        series.append({"dataset": budget.dataset_id, "name": budget.dataset.name, "composition": budget.composition,
                       "accountant": budget.accountant, "delta": budget.delta,
                       "limit": _epsilon(budget.epsilon_limit), "points": points})
    return series


def _composed_text(budget: PrivacyBudget, mechanisms: list, unnamed: Decimal) -> str | None:
    try:
        composed = epsilon_composed(mechanisms=mechanisms, delta=budget.delta, accountant=budget.accountant)
    except AccountingError:
        return None
    return _epsilon(epsilon_ceiling(composed) + unnamed)


def runs_in_flight() -> QuerySet[Job]:
    """Top-level jobs on a dataset (runs, and DP jobs submitted on their own) that have not
    finished, newest first, annotated with the stage they are on (`stage_kind`, `stage_status`)."""
    latest_child = Job.objects.filter(parent=OuterRef("pk")).order_by("-pk")
    return (Job.objects.filter(parent__isnull=True, dataset__isnull=False, status__in=ACTIVE_STATUSES)
            .select_related("owner", "dataset")
            .annotate(stage_kind=Subquery(latest_child.values("kind")[:1]),
                      stage_status=Subquery(latest_child.values("status")[:1]))
            .order_by("-created_at", "-id"))


def runs_awaiting_approval() -> QuerySet[Job]:
    return (Job.objects.filter(status=Job.Status.AWAITING_APPROVAL)
            .select_related("owner", "dataset", "dataset__budget").order_by("created_at", "id"))


def run_row(job: Job) -> dict[str, Any]:
    stage = getattr(job, "stage_kind", None)
    if stage is None and not job_kind_spec(job.kind).executed:
        stage = _first_stage(job)  # a run not submitted yet (awaiting approval): the stage it starts with
    elif stage is None:
        stage = job.kind
    return {"id": job.pk, "kind": job.kind, "status": job.status, "stage": stage,
            "stage_status": getattr(job, "stage_status", None), "dataset": job.dataset.name if job.dataset else None,
            "dataset_id": job.dataset_id, "owner": job.owner.get_username(), "created_at": job.created_at.isoformat()}


def dataset_runs(*, dataset: PrivateDataset) -> list[dict[str, Any]]:
    """Every top-level job on the dataset (runs, and jobs submitted on their own), oldest first,
    with the epsilon the ledger committed for it and its stages (a decimal string) and whether it
    made a non-private release."""
    committed: dict[int, Decimal] = {}
    nonprivate: set[int] = set()
    entries = LedgerEntry.objects.filter(budget__dataset=dataset, kind__in=(LedgerEntry.Kind.COMMIT,
                                                                            LedgerEntry.Kind.NONPRIVATE))
    for kind, epsilon, job_id, parent_id in entries.values_list("kind", "epsilon", "job_id", "job__parent_id"):
        top = parent_id or job_id
        if kind == LedgerEntry.Kind.NONPRIVATE:
            nonprivate.add(top)
        else:
            committed[top] = committed.get(top, Decimal(0)) + epsilon
    jobs = Job.objects.filter(dataset=dataset, parent__isnull=True).select_related("owner").order_by("created_at", "id")
    return [{"job": job, "epsilon_committed": committed.get(job.pk), "nonprivate": job.pk in nonprivate,
             "baseline": job.params.get("baseline")} for job in jobs]


def compliance_snapshot() -> dict[str, Any]:
    """Everything the live dashboard shows, as JSON-ready data (epsilon as decimal strings)."""
    runs = [run_row(job) for job in runs_in_flight()[:200]]
    return {"budgets": budget_rows(), "burndown": burndown(), "runs": runs,
            "awaiting_approval": runs_awaiting_approval().count()}


def compliance_version() -> tuple:
    """A cheap fingerprint of what the dashboard shows: it changes with every ledger row, audit
    entry (limits, thresholds, registrations, decisions) and step of a job in flight. The
    periodic re-read builds a full snapshot only when it changed."""
    active = Job.objects.filter(status__in=ACTIVE_STATUSES, dataset__isnull=False)
    return (LedgerEntry.objects.aggregate(last=Max("id"))["last"],
            AuditEntry.objects.aggregate(last=Max("id"))["last"],
            PrivacyBudget.objects.count(),
            tuple(active.order_by("pk").values_list("pk", "status", "last_event_seq")))


def _epsilon(value: Decimal) -> str:
    """An epsilon as the ledger writes it: a decimal string with its 6 places."""
    return str(value.quantize(QUANTUM))


def _first_stage(run: Job) -> str | None:
    """The stage a run starts with, as its first status event names it."""
    first = run.events.filter(kind=JobEvent.Kind.STATUS).order_by("seq").first()
    return first.payload.get("stage") if first else None


# -- the ledger and the audit trail ------------------------------------------------------------

def ledger_filtered(trail: TrailFilter) -> QuerySet[LedgerEntry]:
    entries = LedgerEntry.objects.select_related("budget__dataset", "job", "actor")
    if trail.dataset is not None:
        entries = entries.filter(budget__dataset=trail.dataset)
    if trail.kind:
        entries = entries.filter(kind=trail.kind)
    return _common_filters(entries, trail).order_by("created_at", "id")


def audit_filtered(trail: TrailFilter) -> QuerySet[AuditEntry]:
    entries = AuditEntry.objects.select_related("dataset", "job", "actor")
    if trail.dataset is not None:
        entries = entries.filter(dataset=trail.dataset)
    if trail.kind:
        entries = entries.filter(action=trail.kind)
    return _common_filters(entries, trail).order_by("created_at", "id")


def _common_filters(entries: QuerySet, trail: TrailFilter) -> QuerySet:
    if trail.user is not None:
        entries = entries.filter(actor=trail.user)
    if trail.date_from is not None:
        entries = entries.filter(created_at__date__gte=trail.date_from)
    if trail.date_to is not None:
        entries = entries.filter(created_at__date__lte=trail.date_to)
    return entries


def ledger_row(entry: LedgerEntry) -> dict[str, Any]:
    """Every column of a ledger row; epsilon as an exact decimal string, delta a probability."""
    return {"id": entry.pk, "created_at": entry.created_at.isoformat(), "dataset_id": entry.budget.dataset_id,
            "dataset": entry.budget.dataset.name, "budget_id": entry.budget_id, "job_id": entry.job_id,
            "job_kind": entry.job.kind, "run_id": entry.job.parent_id, "kind": entry.kind,
            "epsilon": str(entry.epsilon), "epsilon_unit": entry.budget.dataset.epsilon_unit, "delta": entry.delta,
            "actor": entry.actor.get_username(),
            "reason": entry.reason, "mechanism": entry.mechanism}


def audit_row(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.pk, "created_at": entry.created_at.isoformat(), "action": entry.action,
            "dataset_id": entry.dataset_id, "dataset": entry.dataset.name if entry.dataset else None,
            "job_id": entry.job_id, "actor": entry.actor.get_username(), "comment": entry.comment,
            "details": entry.details}


def rows_csv(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> Iterator[str]:
    """CSV lines (a header, then one line per row), to stream; JSON columns as JSON text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(list(columns))
    for row in rows:
        yield line([csv_cell(row[column]) for column in columns])


def csv_cell(value: Any, *, sort_keys: bool = True) -> Any:
    """A CSV cell, safe to open in a spreadsheet: empty for None, yes/no for booleans, JSON for
    dicts and lists; text a spreadsheet would run as a formula (=, +, -, @, tab, CR) gets a
    leading apostrophe. The one rule for every CSV the platform writes (ledger, audit, reports)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
