"""Run approval on the privacy side: each dataset may set an epsilon threshold above which a
run waits for a compliance officer (ksg_web.runs.pipeline.run_submit / run_approve / run_reject use
these); the threshold itself changes only through an audited service.

A run "is above" the threshold when its first stage's target epsilon is strictly greater, and a
non-private baseline (no finite epsilon at all) is above every threshold. A run that reads no
private data (self_instruct) never needs approval.
"""
from decimal import Decimal

from django.db import transaction

from ..access import dataset_manageable_by
from ..events import budget_changed_on_commit
from ..models import AuditEntry, PrivateDataset
from .access import AccessRefused, audit_record
from .budget import LedgerError, budget_fit_check, epsilon_to_decimal, nonprivate_baseline_check
from .datasets import BudgetConfigError
from .dp_jobs import dp_finetune_params_check, dp_finetune_plan

NONPRIVATE = "unbounded"  # the target epsilon shown for a non-private baseline
THRESHOLD_BOUND = Decimal(10) ** 6  # what the column holds (12 digits, 6 after the point)


@transaction.atomic
def approval_threshold_change(*, dataset: PrivateDataset, threshold, actor, comment: str) -> PrivateDataset:
    """Set (or, with None, remove) the epsilon above which runs on `dataset` need approval.
    Administrators and the owner; the comment and the before/after values go into the audit
    trail in the same transaction."""
    if not dataset_manageable_by(actor, dataset):
        raise AccessRefused(f"only an administrator or the owner of '{dataset.name}' may change its approval threshold")
    if not comment.strip():
        raise BudgetConfigError("say why the approval threshold changes; the comment goes into the audit trail")
    value = None if threshold is None or str(threshold).strip() == "" else _validated_threshold(threshold)
    dataset = PrivateDataset.objects.select_for_update().get(pk=dataset.pk)
    before = dataset.approval_epsilon_threshold
    dataset.approval_epsilon_threshold = value
    dataset.save(update_fields=["approval_epsilon_threshold"])
    audit_record(action=AuditEntry.Action.APPROVAL_THRESHOLD_CHANGED, actor=actor, dataset=dataset, comment=comment,
                 details={"approval_epsilon_threshold": {"before": _text(before), "after": _text(value)}})
    budget_changed_on_commit(dataset_id=dataset.pk)
    return dataset


def approval_needed(*, dataset: PrivateDataset | None, stage: str, params: dict) -> dict | None:
    """None when a run whose first stage is `stage` may start at once; otherwise what the
    officer decides on: {"threshold": "2.000000", "target_epsilon": "4.000000" or "unbounded"}."""
    if dataset is None:
        return None
    # from the database, not the caller's instance: a threshold set since it was loaded applies
    threshold = PrivateDataset.objects.filter(pk=dataset.pk).values_list("approval_epsilon_threshold", flat=True).get()
    if threshold is None:
        return None
    if stage == "finetune_private":
        return {"threshold": str(threshold), "target_epsilon": NONPRIVATE}
    if stage != "dp_finetune":
        return None  # reads no private data
    target = epsilon_to_decimal(params["target_epsilon"], what="target epsilon")
    if target <= threshold:
        return None
    return {"threshold": str(threshold), "target_epsilon": str(target)}


def run_first_stage_check(*, dataset: PrivateDataset, stage: str, params: dict) -> None:
    """Refuse at submission what could not start now: the checks the first stage's submit
    service makes (parameters, the budget, the non-private permission), without reserving
    anything. The reservation is made, and checked again under the lock, on approval.
    Raises what the submit service would: NonPrivateRefused, JobParamsError, BudgetExceeded."""
    if stage == "finetune_private":
        nonprivate_baseline_check(dataset=dataset, how_to_allow=False)
    elif stage == "dp_finetune":
        parsed = dp_finetune_params_check(dataset=dataset, params=params)
        amount = epsilon_to_decimal(parsed.target_epsilon, what="target epsilon")
        budget_fit_check(budget=dataset.budget, amount=amount, asker="the run", remedy="have the limit raised",
                         plan=dp_finetune_plan(dataset=dataset, parsed=parsed))


def _validated_threshold(value) -> Decimal:
    try:
        amount = epsilon_to_decimal(value, what="approval threshold")
    except LedgerError as exc:  # its message names the value; callers expect a configuration error
        raise BudgetConfigError(str(exc)) from None
    if amount >= THRESHOLD_BOUND:
        raise BudgetConfigError(f"approval threshold {value!r} is too large; it must be below {THRESHOLD_BOUND:,}")
    return amount


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
