"""Writes of the privacy app: dataset registration and the budget ledger.

Other apps import from here (`from privacy.services import budget_reserve`), never the modules.
"""
from .budget import (
    BudgetExceeded,
    LedgerError,
    budget_commit,
    budget_release,
    budget_reserve,
    budget_settle,
    epsilon_to_decimal,
)
from .datasets import BudgetConfigError, dataset_register
from .dp_jobs import dp_finetune_submit

__all__ = [
    "BudgetConfigError",
    "BudgetExceeded",
    "LedgerError",
    "budget_commit",
    "budget_release",
    "budget_reserve",
    "budget_settle",
    "dataset_register",
    "dp_finetune_submit",
    "epsilon_to_decimal",
]
