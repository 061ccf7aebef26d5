"""Writes that change who may do what, or a budget's limit: each leaves an audit entry in the
same transaction."""
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from ..access import ADMIN, ROLES, dataset_manageable_by
from ..models import AuditEntry, DatasetGrant, PrivacyBudget, PrivateDataset
from ..selectors import budget_balance
from .datasets import BudgetConfigError, _validated_epsilon_limit


class AccessRefused(PermissionError):
    """The actor may not make this change."""


def audit_record(*, action: str, actor, dataset=None, job=None, comment: str = "", details: dict | None = None) -> AuditEntry:
    return AuditEntry.objects.create(action=action, actor=actor, dataset=dataset, job=job, comment=comment,
                                     details=details or {})


@transaction.atomic
def budget_limit_change(*, dataset: PrivateDataset, epsilon_limit, actor, comment: str) -> PrivacyBudget:
    """Set the dataset's epsilon limit (administrators and the owner). A limit below what is
    already spent and reserved is refused: the ledger cannot be undone."""
    if not dataset_manageable_by(actor, dataset):
        raise AccessRefused(f"only an administrator or the owner of '{dataset.name}' may change its budget")
    if not comment.strip():
        raise BudgetConfigError("say why the limit changes; the comment goes into the audit trail")
    limit = _validated_epsilon_limit(epsilon_limit)
    budget = PrivacyBudget.objects.select_for_update().get(dataset=dataset)
    balance = budget_balance(budget=budget)
    if limit < balance.spent + balance.reserved:
        raise BudgetConfigError(
            f"epsilon limit {limit} is below what is already spent ({balance.spent}) and reserved "
            f"({balance.reserved}) on '{dataset.name}'; the smallest possible limit is {balance.spent + balance.reserved}"
        )
    before = budget.epsilon_limit
    budget.epsilon_limit = limit
    budget.save(update_fields=["epsilon_limit"])
    audit_record(action=AuditEntry.Action.BUDGET_CHANGED, actor=actor, dataset=dataset, comment=comment,
                 details={"epsilon_limit": {"before": str(before), "after": str(limit)}})
    return budget


@transaction.atomic
def dataset_grant(*, dataset: PrivateDataset, actor, user=None, group: Group | None = None,
                  can_read_records: bool = False) -> DatasetGrant:
    """Let `user` or `group` use the dataset (the owner or an administrator grants)."""
    if not dataset_manageable_by(actor, dataset):
        raise AccessRefused(f"only an administrator or the owner of '{dataset.name}' may grant access to it")
    if (user is None) == (group is None):
        raise ValueError("grant to exactly one user or one group")
    grant, created = DatasetGrant.objects.get_or_create(dataset=dataset, user=user, group=group,
                                                        defaults={"granted_by": actor, "can_read_records": can_read_records})
    if not created and grant.can_read_records != can_read_records:
        grant.can_read_records = can_read_records
        grant.save(update_fields=["can_read_records"])
    audit_record(action=AuditEntry.Action.GRANT_ADDED, actor=actor, dataset=dataset,
                 details={"user": user.get_username() if user else None, "group": group.name if group else None,
                          "can_read_records": can_read_records})
    return grant


@transaction.atomic
def dataset_revoke(*, grant: DatasetGrant, actor) -> None:
    dataset = grant.dataset
    if not dataset_manageable_by(actor, dataset):
        raise AccessRefused(f"only an administrator or the owner of '{dataset.name}' may revoke access to it")
    audit_record(action=AuditEntry.Action.GRANT_REMOVED, actor=actor, dataset=dataset,
                 details={"user": grant.user.get_username() if grant.user else None,
                          "group": grant.group.name if grant.group else None})
    grant.delete()


@transaction.atomic
def user_create(*, username: str, role: str, password: str, email: str = ""):
    """A user in one role group; administrators are also staff and superusers (Django admin)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    users = get_user_model()
    if users.objects.filter(username=username).exists():
        raise ValueError(f"a user named {username!r} already exists")
    if role == ADMIN:
        user = users.objects.create_superuser(username=username, email=email, password=password)
    else:
        user = users.objects.create_user(username=username, email=email, password=password)
    user.groups.add(Group.objects.get(name=role))
    return user


__all__ = ["AccessRefused", "audit_record", "budget_limit_change", "dataset_grant", "dataset_revoke",
           "user_create"]
