"""A dataset's composition policy: how its DP jobs' spends add up against the limit. Chosen by a
compliance officer (or an administrator); the change and the figures before and after it go
into the audit trail in the same transaction."""
from django.db import transaction

from ..access import is_compliance_officer
from ..events import budget_changed_on_commit
from ..models import AuditEntry, PrivacyBudget, PrivateDataset
from ..selectors import budget_balance
from .access import AccessRefused, audit_record
from .datasets import BudgetConfigError


@transaction.atomic
def budget_composition_change(*, dataset: PrivateDataset, composition: str, actor, comment: str) -> PrivacyBudget:
    """Set the dataset's composition policy to "sequential" or "tight". Refused (AccessRefused)
    for anyone but a compliance officer or an administrator, and (BudgetConfigError) for an
    unknown policy or an empty comment. Switching changes only what later admissions charge:
    every row of the ledger stays as written, and both figures stay visible."""
    if not is_compliance_officer(actor):
        raise AccessRefused(f"only a compliance officer or an administrator may change how '{dataset.name}' "
                            "composes its privacy budget")
    if composition not in PrivacyBudget.Composition.values:
        raise BudgetConfigError(f"composition must be one of {', '.join(PrivacyBudget.Composition.values)}; "
                                f"got {composition!r}")
    if not comment.strip():
        raise BudgetConfigError("say why the composition policy changes; the comment goes into the audit trail")
    budget = PrivacyBudget.objects.select_for_update().get(dataset=dataset)
    before = budget_balance(budget=budget)
    previous = budget.composition
    budget.composition = composition
    budget.save(update_fields=["composition"])
    after = budget_balance(budget=budget)
    audit_record(action=AuditEntry.Action.COMPOSITION_CHANGED, actor=actor, dataset=dataset, comment=comment,
                 details={"composition": {"before": previous, "after": composition},
                          "charged": {"before": str(before.spent + before.reserved),
                                      "after": str(after.spent + after.reserved)},
                          "sequential_spent": str(after.sequential_spent),
                          "composed_spent": str(after.composed.spent) if after.composed else None,
                          "accountant": budget.accountant, "delta": budget.delta})
    budget_changed_on_commit(dataset_id=dataset.pk)
    return budget
