"""The `tight` composition policy on the ledger (issue 25): admission of the composed increase,
both figures side by side, rows without a mechanism counted on top, the audited policy change,
and no overspend under concurrent reservations (PostgreSQL in CI, SQLite otherwise)."""
import threading
from decimal import Decimal

import pytest
from django.db import connection

from privacy.dp.accountant import epsilon_compute
from privacy.dp.composition import Mechanism, epsilon_composed
from privacy.models import AuditEntry, LedgerEntry, PrivacyBudget
from privacy.selectors import dataset_balance, epsilon_ceiling
from privacy.services import (
    AccessRefused,
    BudgetConfigError,
    BudgetExceeded,
    budget_commit,
    budget_composition_change,
    budget_release,
    budget_reserve,
    budget_settle,
)
from tests.privacy.factories import make_dataset, make_dp_job

DELTA = 1e-4  # make_dataset's
RUN = Mechanism(0.02, 1.0, 500)  # one DP-SGD run; its own epsilon at DELTA is 2.32 (PRV), four compose to 4.85


def own_epsilon(mechanism: Mechanism, steps: int | None = None) -> float:
    return epsilon_compute(sample_rate=mechanism.sample_rate, noise_multiplier=mechanism.noise_multiplier,
                           steps=steps or mechanism.steps, delta=DELTA)


def composed(*mechanisms: Mechanism) -> Decimal:
    return epsilon_ceiling(epsilon_composed(mechanisms=mechanisms, delta=DELTA))


def tight_dataset(owner, *, epsilon_limit):
    dataset = make_dataset(owner, epsilon_limit=epsilon_limit)
    PrivacyBudget.objects.filter(dataset=dataset).update(composition="tight")
    dataset.refresh_from_db()
    return dataset


def run_job(owner, dataset, mechanism: Mechanism = RUN):
    """Reserve with the plan, commit what the plan ran, release: what dp_finetune does."""
    job = make_dp_job(owner, dataset)
    target = own_epsilon(mechanism)
    budget_reserve(job=job, epsilon=target, actor=owner, plan=mechanism)
    budget_settle(job=job, epsilon=target, delta=DELTA, mechanism=mechanism.as_record(), actor=owner)
    return job


@pytest.fixture()
def owner(make_user):
    return make_user("ada")


@pytest.mark.django_db
def test_tight_admits_a_job_the_sum_would_refuse(owner):
    limit = "5"
    sequential, tight = make_dataset(owner, name="sum", epsilon_limit=limit), tight_dataset(owner, epsilon_limit=limit)
    for dataset in (sequential, tight):
        run_job(owner, dataset)
        run_job(owner, dataset)
    third = own_epsilon(RUN)
    assert 2 * third < 5 < 3 * third  # the sum refuses a third run ...
    assert composed(RUN, RUN, RUN) < 5  # ... composition does not

    with pytest.raises(BudgetExceeded, match="at most"):
        budget_reserve(job=make_dp_job(owner, sequential), epsilon=third, actor=owner, plan=RUN)
    entry = budget_reserve(job=make_dp_job(owner, tight), epsilon=third, actor=owner, plan=RUN)

    assert entry.epsilon == epsilon_ceiling(third)  # the column stays the job's own epsilon
    assert entry.mechanism["plan"] == RUN.as_record()
    assert Decimal(entry.mechanism["composed_before"]) == composed(RUN, RUN)
    assert Decimal(entry.mechanism["composed_after"]) == composed(RUN, RUN, RUN)
    assert Decimal(entry.mechanism["composed_increase"]) < epsilon_ceiling(third)
    balance = dataset_balance(dataset=tight)
    assert balance.composition == "tight"
    assert (balance.spent, balance.spent + balance.reserved) == (composed(RUN, RUN), composed(RUN, RUN, RUN))
    assert balance.sequential_spent == 2 * epsilon_ceiling(third) > balance.spent
    assert balance.composed.accountant == "prv" and balance.composed.delta == DELTA


@pytest.mark.django_db
def test_tight_refuses_a_plan_whose_composition_passes_the_limit(owner):
    dataset = tight_dataset(owner, epsilon_limit="3")
    run_job(owner, dataset)
    heavy = Mechanism(0.02, 0.7, 800)
    job = make_dp_job(owner, dataset)

    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(job=job, epsilon=own_epsilon(heavy), actor=owner, plan=heavy)

    message = str(refused.value)
    assert "tight composition (prv, delta 0.0001)" in message and "limit is 3" in message
    assert f"composes to {composed(RUN)}, and with this job to {composed(RUN, heavy)}" in message
    assert not LedgerEntry.objects.filter(job=job).exists()


@pytest.mark.django_db
def test_commit_records_the_increase_its_actual_steps_caused(owner):
    dataset = tight_dataset(owner, epsilon_limit="10")
    run_job(owner, dataset)
    job = make_dp_job(owner, dataset)
    budget_reserve(job=job, epsilon=own_epsilon(RUN), actor=owner, plan=RUN)
    stopped = Mechanism(RUN.sample_rate, RUN.noise_multiplier, 120)  # cancelled after 120 of 500 steps

    commit = budget_commit(job=job, epsilon=own_epsilon(stopped), delta=DELTA, mechanism=stopped.as_record(),
                           actor=owner)
    budget_release(job=job, actor=owner)

    assert commit.mechanism["steps"] == 120 and commit.mechanism["composition"] == "tight"
    assert Decimal(commit.mechanism["composed_after"]) == composed(RUN, stopped) == dataset_balance(dataset=dataset).spent
    assert Decimal(commit.mechanism["composed_increase"]) == composed(RUN, stopped) - composed(RUN)
    assert dataset_balance(dataset=dataset).reserved == 0


@pytest.mark.django_db
def test_rows_without_a_mechanism_are_counted_on_top_of_the_composed_figure(owner):
    dataset = tight_dataset(owner, epsilon_limit="20")
    run_job(owner, dataset)
    legacy = make_dp_job(owner, dataset)  # a commit written before mechanisms were kept
    budget_reserve(job=legacy, epsilon=2, actor=owner)
    budget_settle(job=legacy, epsilon=1.5, delta=DELTA, mechanism={}, actor=owner)
    unplanned = make_dp_job(owner, dataset)  # a reservation made without a plan (e.g. under sequential)
    budget_reserve(job=unplanned, epsilon=3, actor=owner)

    balance = dataset_balance(dataset=dataset)

    assert balance.composed.spent == composed(RUN) + Decimal("1.5")
    assert balance.composed.with_reserved == composed(RUN) + Decimal("1.5") + 3
    assert balance.composed.sequential_terms == 2 and balance.composed.delta == pytest.approx(2 * DELTA)
    assert (balance.spent, balance.reserved) == (balance.composed.spent, 3)
    assert balance.sequential_spent == epsilon_ceiling(own_epsilon(RUN)) + Decimal("1.5")


@pytest.mark.django_db
def test_sequential_budgets_still_show_the_composed_figure(owner):
    dataset = make_dataset(owner, epsilon_limit="10")
    run_job(owner, dataset)
    run_job(owner, dataset)

    balance = dataset_balance(dataset=dataset)

    assert balance.spent == balance.sequential_spent == 2 * epsilon_ceiling(own_epsilon(RUN))
    assert balance.composed.spent == composed(RUN, RUN) < balance.spent
    assert "composition" not in LedgerEntry.objects.filter(kind="reserve").first().mechanism


@pytest.mark.django_db
def test_only_a_compliance_officer_changes_the_policy_and_the_change_is_audited(owner, make_user):
    dataset = make_dataset(owner, epsilon_limit="10")
    run_job(owner, dataset)
    run_job(owner, dataset)
    officer = make_user("olga", role="compliance_officer")

    with pytest.raises(AccessRefused, match="compliance officer"):
        budget_composition_change(dataset=dataset, composition="tight", actor=owner, comment="cheaper")
    with pytest.raises(BudgetConfigError, match="sequential, tight"):
        budget_composition_change(dataset=dataset, composition="loose", actor=officer, comment="x")
    with pytest.raises(BudgetConfigError, match="say why"):
        budget_composition_change(dataset=dataset, composition="tight", actor=officer, comment=" ")
    budget_composition_change(dataset=dataset, composition="tight", actor=officer, comment="PRV over all runs")

    assert PrivacyBudget.objects.get(dataset=dataset).composition == "tight"
    (entry,) = AuditEntry.objects.filter(action="composition_changed")
    assert entry.actor == officer and entry.comment == "PRV over all runs"
    assert entry.details["composition"] == {"before": "sequential", "after": "tight"}
    assert entry.details["charged"] == {"before": str(2 * epsilon_ceiling(own_epsilon(RUN))),
                                        "after": str(composed(RUN, RUN))}


@pytest.mark.django_db(transaction=True)
def test_concurrent_tight_reservations_never_pass_the_limit(owner):
    limit = Decimal("5")
    dataset = tight_dataset(owner, epsilon_limit=str(limit))
    admissible = max(n for n in range(1, 12) if composed(*[RUN] * n) <= limit)
    assert admissible * epsilon_ceiling(own_epsilon(RUN)) > limit  # more than the sum would admit
    jobs = [make_dp_job(owner, dataset) for _ in range(admissible + 4)]
    start = threading.Barrier(len(jobs))
    outcomes: list[str] = []

    def reserve(job):
        try:
            start.wait()
            budget_reserve(job=job, epsilon=own_epsilon(RUN), actor=owner, plan=RUN)
            outcomes.append("ok")
        except BudgetExceeded:
            outcomes.append("refused")
        except Exception as exc:  # anything else is a bug the assertion below shows
            outcomes.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=reserve, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["ok"] * admissible + ["refused"] * 4
    balance = dataset_balance(dataset=dataset)
    assert balance.spent + balance.reserved == composed(*[RUN] * admissible) <= limit
