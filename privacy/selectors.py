"""Reads of the privacy app. Balances are derived from the ledger, never stored."""
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from .dp.accountant import epsilon_compute
from .models import LedgerEntry, PrivacyBudget, PrivateDataset

CANARIES_FILE = "canaries.jsonl"  # beside train.jsonl: the planted secrets, for the exposure measurement
AUDIT_CANARIES_FILE = "audit_canaries.jsonl"  # beside train.jsonl: the audit canaries and their coin flips


@dataclass(frozen=True)
class BudgetBalance:
    """Where a dataset's epsilon stands (epsilon is dimensionless; delta a probability)."""

    limit: Decimal
    spent: Decimal      # sum of commits: sequential composition across jobs
    reserved: Decimal   # set aside by jobs that have not settled yet
    left: Decimal       # limit - spent - reserved (negative only if a commit exceeded its reservation)
    delta_spent: float  # sum of the deltas of the commits (sequential composition)
    commits: int
    nonprivate_releases: int = 0  # baselines trained on the raw records: no DP guarantee at all

    def fits(self, epsilon: Decimal) -> bool:
        """Whether a new reservation of `epsilon` keeps spent + reserved within the limit (the
        budget-fit rule; privacy.services.budget_fit_check refuses what does not fit)."""
        return self.spent + self.reserved + epsilon <= self.limit


def budget_balance(*, budget: PrivacyBudget) -> BudgetBalance:
    per_job: dict[int, dict[str, LedgerEntry]] = {}
    for entry in LedgerEntry.objects.filter(budget=budget).only("job_id", "kind", "epsilon", "delta"):
        per_job.setdefault(entry.job_id, {})[entry.kind] = entry
    spent, reserved, delta_spent, commits = Decimal(0), Decimal(0), 0.0, 0
    nonprivate = sum(LedgerEntry.Kind.NONPRIVATE in entries for entries in per_job.values())
    for entries in per_job.values():
        commit = entries.get(LedgerEntry.Kind.COMMIT)
        if commit is not None:
            spent += commit.epsilon
            delta_spent += commit.delta
            commits += 1
        reserve = entries.get(LedgerEntry.Kind.RESERVE)
        if reserve is not None and LedgerEntry.Kind.RELEASE not in entries:
            # Unsettled: the whole reservation stays set aside, less anything already committed.
            reserved += max(reserve.epsilon - (commit.epsilon if commit else Decimal(0)), Decimal(0))
    left = budget.epsilon_limit - spent - reserved
    return BudgetBalance(budget.epsilon_limit, spent, reserved, left, delta_spent, commits, nonprivate)


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
