"""A dataset's privacy statement: one page a compliance officer hands to a regulator. Everything
is read from the append-only ledger, the audit trail and the runs' evaluations; the composed
guarantee comes from the budget's accountant and is set beside Google dp-accounting's figure for
the same mechanisms (privacy.dp.composition). It sits with the runs (the top layer) because it
names each run's attack results beside the ledger's releases."""
from typing import Any

from jobs.models import Job
from privacy.dp.accountant import PRV_EPS_ERROR, AccountingError
from privacy.dp.composition import Mechanism, epsilon_independent
from privacy.models import LedgerEntry, PrivateDataset
from privacy.selectors import budget_figures, dataset_balance, epsilon_ceiling, ledger_for

from .kinds import RUN
from .report import BASELINE_LABELS, report_comparison_row

# the attack figures the statement names per run (keys of the run report's headline)
ATTACK_FIGURES = (
    ("audit_epsilon_lower_bound", "audited ε lower bound (95%)"),
    ("audit_dp_adapter_epsilon_lower_bound", "audited ε lower bound of the stage-1 adapter (95%)"),
    ("membership_auc_loss", "membership inference AUC (loss)"),
    ("reconstruction_top1_rate", "name reconstruction top-1"),
    ("reconstruction_random_guess_rate", "its chance rate"),
    ("canary_mean_exposure", "canary exposure, mean (bits)"),
)
METHOD = {
    "prv": ("PRV: the privacy loss random variables of every job composed numerically (Gopi, Lee, Wutschitz 2021) "
            f"by Opacus' PRVAccountant; the certified upper bound is reported (estimate plus at most {PRV_EPS_ERROR})"),
    "rdp": ("RDP: the Renyi DP curves of every job added (Mironov 2017) by Opacus' RDPAccountant and converted "
            "to (ε, δ); a proven upper bound, looser than PRV"),
}


def dataset_statement(*, dataset: PrivateDataset) -> dict[str, Any]:
    """The statement's content, JSON-ready: dataset, releases, both figures, the independent
    check, each run's attack results, the decisions from the audit trail, library versions."""
    budget = dataset.budget
    balance = dataset_balance(dataset=dataset)
    figures = budget_figures(balance=balance)
    releases = _releases(dataset)
    mechanisms = [Mechanism.from_record(release["mechanism"]) for release in releases if release["dp"]]
    independent, independent_error = None, None
    try:  # the check needs every commit to name its mechanism; rows that do not are named below
        independent = str(epsilon_ceiling(epsilon_independent(mechanisms=[m for m in mechanisms if m],
                                                              delta=budget.delta)))
    except (AccountingError, ImportError) as error:
        independent_error = str(error)
    return {
        "dataset": dataset, "budget": budget, "balance": balance, "figures": figures, "releases": releases,
        "dp_releases": sum(release["dp"] for release in releases),
        "nonprivate_releases": sum(not release["dp"] for release in releases),
        "method": METHOD.get(budget.accountant, budget.accountant),
        "independent": independent, "independent_error": independent_error,
        "runs": _runs(dataset), "attack_figures": ATTACK_FIGURES,
        "decisions": list(dataset.audit_entries.select_related("actor", "job").order_by("created_at", "id")),
    }


def _releases(dataset: PrivateDataset) -> list[dict[str, Any]]:
    """Every release the ledger records: each DP commit with its mechanism, and each non-private
    release named as such."""
    rows = []
    for entry in ledger_for(dataset=dataset).filter(kind__in=[LedgerEntry.Kind.COMMIT, LedgerEntry.Kind.NONPRIVATE]):
        parent = entry.job.parent
        mechanism = entry.mechanism or {}
        rows.append({
            "entry": entry, "job": entry.job, "dp": entry.kind == LedgerEntry.Kind.COMMIT,
            "run": parent.pk if parent else None,
            "baseline": BASELINE_LABELS.get((parent.params or {}).get("baseline", ""), "") if parent else "",
            "mechanism": mechanism, "named": Mechanism.from_record(mechanism) is not None,
        })
    return rows


def _runs(dataset: PrivateDataset) -> list[dict[str, Any]]:
    """Each run on the dataset with its evaluation's attack figures (None where not evaluated)."""
    rows = []
    for run in Job.objects.filter(kind=RUN, dataset=dataset).order_by("created_at", "pk"):
        row = report_comparison_row(run)
        rows.append({**row, "attacks": [(label, row.get(key)) for key, label in ATTACK_FIGURES]})
    return rows
