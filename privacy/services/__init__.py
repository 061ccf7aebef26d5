"""Writes of the privacy app: dataset registration and the budget ledger.

Other apps import from here (`from privacy.services import budget_reserve`), never the modules.
"""
from ..events import budget_changed_on_commit
from .access import AccessRefused, audit_record, budget_limit_change, dataset_grant, dataset_revoke, user_create
from .approval import approval_needed, approval_threshold_change, run_first_stage_check
from .budget import (
    BudgetExceeded,
    LedgerError,
    NonPrivateRefused,
    budget_commit,
    budget_fit_check,
    budget_nonprivate_release,
    budget_release,
    budget_reserve,
    budget_settle,
    epsilon_to_decimal,
    nonprivate_baseline_check,
)
from .composition import budget_composition_change
from .datasets import BudgetConfigError, dataset_register
from .dp_jobs import dp_finetune_params_check, dp_finetune_plan, dp_finetune_submit, finetune_private_submit

__all__ = [
    "approval_needed",
    "approval_threshold_change",
    "budget_changed_on_commit",
    "run_first_stage_check",
    "AccessRefused",
    "audit_record",
    "budget_limit_change",
    "dataset_grant",
    "dataset_revoke",
    "user_create",
    "BudgetConfigError",
    "BudgetExceeded",
    "LedgerError",
    "NonPrivateRefused",
    "budget_commit",
    "budget_composition_change",
    "budget_fit_check",
    "budget_nonprivate_release",
    "budget_release",
    "budget_reserve",
    "budget_settle",
    "dataset_register",
    "dp_finetune_params_check",
    "dp_finetune_plan",
    "dp_finetune_submit",
    "finetune_private_submit",
    "epsilon_to_decimal",
    "nonprivate_baseline_check",
]
