"""The epsilon ledger: reserve, commit, release; refusals; idempotency; append-only rows;
and no overspend under concurrent reservations (PostgreSQL in CI, SQLite otherwise)."""
import threading
from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from privacy.models import LedgerEntry
from privacy.selectors import dataset_balance
from privacy.services import (
    BudgetExceeded,
    LedgerError,
    budget_commit,
    budget_release,
    budget_reserve,
    budget_settle,
)
from tests.privacy.factories import make_dataset, make_dp_job

MECHANISM = {"sample_rate": 0.01, "noise_multiplier": 1.1, "steps": 100, "accountant": "prv"}


@pytest.fixture()
def owner(make_user):
    return make_user("ada")


@pytest.mark.django_db
def test_reserve_commit_release_leave_the_right_balance(owner):
    dataset = make_dataset(owner, epsilon_limit="10")
    job = make_dp_job(owner, dataset)

    budget_reserve(job=job, epsilon=4, actor=owner)
    during = dataset_balance(dataset=dataset)
    balance = budget_settle(job=job, epsilon=3.2500001, delta=1e-4, mechanism=MECHANISM, actor=owner)

    assert (during.spent, during.reserved, during.left) == (0, 4, 6)
    assert balance.spent == Decimal("3.250001")  # rounded up, never down
    assert (balance.reserved, balance.left) == (0, Decimal("6.749999"))
    kinds = list(LedgerEntry.objects.filter(job=job).values_list("kind", "epsilon"))
    assert kinds == [("reserve", Decimal("4")), ("commit", Decimal("3.250001")), ("release", Decimal("0.749999"))]
    assert LedgerEntry.objects.get(job=job, kind="commit").mechanism == MECHANISM
    assert list(job.events.values_list("payload__ledger", flat=True)) == ["reserve", "commit", "release"]


@pytest.mark.django_db
def test_reserve_refused_when_limit_would_be_exceeded(owner):
    dataset = make_dataset(owner, epsilon_limit="10")
    budget_reserve(job=make_dp_job(owner, dataset), epsilon=4, actor=owner)
    second = make_dp_job(owner, dataset)

    with pytest.raises(BudgetExceeded) as refused:
        budget_reserve(job=second, epsilon=8, actor=owner)

    message = str(refused.value)
    for number in ("epsilon 8", "limit is 10", "0 is spent", "4 reserved", "at most 6"):
        assert number in message.replace(".000000", "")
    assert not LedgerEntry.objects.filter(job=second).exists()


@pytest.mark.django_db
def test_services_are_idempotent_per_job_and_kind(owner):
    job = make_dp_job(owner, make_dataset(owner))
    first = budget_reserve(job=job, epsilon="2.5", actor=owner)
    assert budget_reserve(job=job, epsilon="2.5", actor=owner) == first
    with pytest.raises(LedgerError, match="already reserved epsilon 2.5"):
        budget_reserve(job=job, epsilon=3, actor=owner)
    commit = budget_commit(job=job, epsilon=1.0, delta=1e-4, mechanism=MECHANISM, actor=owner)
    assert budget_commit(job=job, epsilon=9.0, delta=1e-4, mechanism=MECHANISM, actor=owner) == commit
    release = budget_release(job=job, actor=owner)
    assert budget_release(job=job, actor=owner) == release
    assert LedgerEntry.objects.filter(job=job).count() == 3


@pytest.mark.django_db
def test_a_job_that_dies_before_committing_releases_everything(owner):
    dataset = make_dataset(owner)
    job = make_dp_job(owner, dataset)
    budget_reserve(job=job, epsilon=5, actor=owner)
    assert budget_release(job=job, actor=owner).epsilon == 5
    assert dataset_balance(dataset=dataset).left == 10


@pytest.mark.django_db
def test_a_commit_above_the_reservation_is_recorded_in_full(owner):
    dataset = make_dataset(owner)
    job = make_dp_job(owner, dataset)
    budget_reserve(job=job, epsilon=1, actor=owner)
    balance = budget_settle(job=job, epsilon=1.2, delta=1e-4, mechanism=MECHANISM, actor=owner)
    assert balance.spent == Decimal("1.2") and balance.left == Decimal("8.8")


@pytest.mark.django_db
@pytest.mark.parametrize("epsilon", [-1, float("nan"), float("inf"), "lots", 0])
def test_impossible_reservations_are_refused(owner, epsilon):
    job = make_dp_job(owner, make_dataset(owner))
    with pytest.raises(LedgerError):
        budget_reserve(job=job, epsilon=epsilon, actor=owner)


@pytest.mark.django_db
def test_commit_without_reservation_and_jobs_without_budget_are_refused(owner):
    dataset = make_dataset(owner)
    with pytest.raises(LedgerError, match="no reservation"):
        budget_commit(job=make_dp_job(owner, dataset), epsilon=1, delta=1e-4, mechanism={}, actor=owner)
    with pytest.raises(LedgerError, match="has no dataset"):
        budget_reserve(job=make_dp_job(owner, None), epsilon=1, actor=owner)


@pytest.mark.django_db
def test_the_database_refuses_to_update_a_ledger_row(owner):
    job = make_dp_job(owner, make_dataset(owner))
    entry = budget_reserve(job=job, epsilon=1, actor=owner)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(epsilon=Decimal("0.1"))
    entry.refresh_from_db()
    assert entry.epsilon == 1


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the DELETE trigger is PostgreSQL's; see migration 0002")
def test_postgres_refuses_to_delete_a_ledger_row(owner):
    entry = budget_reserve(job=make_dp_job(owner, make_dataset(owner)), epsilon=1, actor=owner)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_reservations_against_a_budget_for_ten(owner):
    dataset = make_dataset(owner, epsilon_limit="10")
    jobs = [make_dp_job(owner, dataset) for _ in range(50)]
    start = threading.Barrier(50)
    outcomes: list[str] = []

    def reserve(job):
        try:
            start.wait()
            budget_reserve(job=job, epsilon=1, actor=owner)
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

    assert sorted(outcomes) == ["ok"] * 10 + ["refused"] * 40
    assert LedgerEntry.objects.filter(budget__dataset=dataset, kind="reserve").count() == 10
    balance = dataset_balance(dataset=dataset)
    assert (balance.reserved, balance.left) == (10, 0)


@pytest.mark.django_db
def test_admin_shows_the_ledger_read_only(client, owner, make_user):
    job = make_dp_job(owner, make_dataset(owner))
    entry = budget_reserve(job=job, epsilon=1, actor=owner)
    client.force_login(make_user("root", staff=True).__class__.objects.create_superuser("boss", password="x-long-pw-1"))
    assert client.get("/admin/privacy/ledgerentry/").status_code == 200
    assert client.get(f"/admin/privacy/ledgerentry/{entry.pk}/change/").status_code == 200  # a read-only view
    assert client.post(f"/admin/privacy/ledgerentry/{entry.pk}/change/", {"epsilon": "0"}).status_code == 403
    assert client.post(f"/admin/privacy/ledgerentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/privacy/ledgerentry/add/").status_code == 403
    entry.refresh_from_db()
    assert entry.epsilon == 1
