"""Roles, dataset grants and the audit trail: who sees and uses which dataset and run."""
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from jobs.models import Job
from jobs.selectors import jobs_visible_to
from privacy.access import (ROLES, dataset_records_readable, datasets_usable_by, datasets_visible_to,
                            is_compliance_officer, user_roles)
from privacy.models import AuditEntry
from privacy.services import (AccessRefused, BudgetConfigError, budget_limit_change, budget_reserve, dataset_grant,
                              dataset_revoke, user_create)
from tests.support.datasets import register_demo_dataset

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password-1"


@pytest.fixture()
def world(tmp_path, settings):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = user_create(username="olive", role="data_scientist", password=PASSWORD)
    other = user_create(username="dan", role="data_scientist", password=PASSWORD)
    officer = user_create(username="cleo", role="compliance_officer", password=PASSWORD)
    admin = user_create(username="root", role="admin", password=PASSWORD)
    dataset, _ = register_demo_dataset(tmp_path, owner, n=20, seed=1)
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, params={})
    return {"owner": owner, "other": other, "officer": officer, "admin": admin, "dataset": dataset, "run": run}


def test_the_migration_creates_the_three_roles_with_permissions():
    groups = {group.name: set(group.permissions.values_list("codename", flat=True)) for group in Group.objects.all()}
    assert set(ROLES) <= set(groups)
    assert "view_ledgerentry" in groups["compliance_officer"] and "view_ledgerentry" not in groups["data_scientist"]
    assert "change_privacybudget" in groups["admin"]


def test_a_data_scientist_sees_only_what_they_own_or_were_granted(world):
    owner, other, dataset, run = world["owner"], world["other"], world["dataset"], world["run"]
    assert list(datasets_usable_by(owner)) == [dataset] and list(jobs_visible_to(owner)) == [run]
    assert not datasets_usable_by(other).exists() and not jobs_visible_to(other).exists()

    grant = dataset_grant(dataset=dataset, actor=owner, user=other)
    assert list(datasets_usable_by(other)) == [dataset] and list(jobs_visible_to(other)) == [run]
    assert not dataset_records_readable(other, dataset)

    dataset_revoke(grant=grant, actor=owner)
    assert not datasets_usable_by(other).exists() and not jobs_visible_to(other).exists()


def test_a_group_grant_reaches_its_members(world):
    team = Group.objects.create(name="oncology")
    world["other"].groups.add(team)
    dataset_grant(dataset=world["dataset"], actor=world["admin"], group=team, can_read_records=True)
    assert list(datasets_usable_by(world["other"])) == [world["dataset"]]
    assert dataset_records_readable(world["other"], world["dataset"])


def test_a_compliance_officer_oversees_everything_but_reads_no_records_without_a_grant(world):
    officer, dataset = world["officer"], world["dataset"]
    assert is_compliance_officer(officer) and user_roles(officer) == {"compliance_officer"}
    assert list(datasets_visible_to(officer)) == [dataset] and list(jobs_visible_to(officer)) == [world["run"]]
    assert not datasets_usable_by(officer).exists()
    assert not dataset_records_readable(officer, dataset)
    assert dataset_records_readable(world["owner"], dataset) and dataset_records_readable(world["admin"], dataset)


def test_only_the_owner_or_an_administrator_grants(world):
    with pytest.raises(AccessRefused, match="only an administrator or the owner"):
        dataset_grant(dataset=world["dataset"], actor=world["other"], user=world["other"])
    with pytest.raises(AccessRefused):
        dataset_grant(dataset=world["dataset"], actor=world["officer"], user=world["officer"])


def test_a_budget_change_is_audited_and_cannot_undercut_the_ledger(world):
    dataset, owner = world["dataset"], world["owner"]
    budget_reserve(job=world["run"], epsilon=3, actor=owner)
    with pytest.raises(BudgetConfigError, match="below what is already spent"):
        budget_limit_change(dataset=dataset, epsilon_limit="2.5", actor=world["admin"], comment="tighten")
    with pytest.raises(BudgetConfigError, match="say why"):
        budget_limit_change(dataset=dataset, epsilon_limit="12", actor=world["admin"], comment=" ")
    with pytest.raises(AccessRefused):
        budget_limit_change(dataset=dataset, epsilon_limit="12", actor=world["officer"], comment="more")

    budget = budget_limit_change(dataset=dataset, epsilon_limit="12", actor=world["admin"], comment="second study")

    assert budget.epsilon_limit == Decimal("12")
    entry = AuditEntry.objects.filter(action="budget_changed").get()
    assert entry.actor == world["admin"] and entry.comment == "second study"
    assert entry.details == {"epsilon_limit": {"before": "10.000000", "after": "12"}}
    assert AuditEntry.objects.filter(action="dataset_registered", dataset=dataset).exists()


def test_audit_entries_cannot_be_changed_in_the_database(world):
    entry = AuditEntry.objects.first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(comment="rewritten")
    if connection.vendor == "postgresql":
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEntry.objects.filter(pk=entry.pk).delete()


def test_ksg_user_add_creates_a_user_in_a_role():
    out = io.StringIO()
    call_command("ksg_user_add", "cleo", "--role", "compliance_officer", stdout=out)
    assert "password: " in out.getvalue()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="cleo")
    assert user_roles(user) == {"compliance_officer"} and not user.is_staff
    with pytest.raises(CommandError, match="already exists"):
        call_command("ksg_user_add", "cleo", "--role", "admin")
    with pytest.raises(CommandError, match="too weak"):
        call_command("ksg_user_add", "max", "--role", "admin", "--password", "abc")
    call_command("ksg_user_add", "root", "--role", "admin", "--password", PASSWORD, stdout=io.StringIO())
    root = get_user_model().objects.get(username="root")
    assert root.is_superuser and root.is_staff and "admin" in user_roles(root)
