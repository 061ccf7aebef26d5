"""Django admin: the ledger and the audit trail are read-only even for a superuser; budgets,
approval thresholds and grants change only through their audited services; jobs and their
events can be searched."""
from decimal import Decimal

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory
from django.urls import reverse

from jobs.models import Job, JobEvent
from jobs.services import job_event_record
from privacy.models import AuditEntry, DatasetGrant, LedgerEntry, PrivacyBudget
from privacy.services import budget_reserve
from tests.privacy.factories import make_dataset, make_dp_job

pytestmark = pytest.mark.django_db


@pytest.fixture()
def world(make_user):
    root, owner = make_user("root", role="admin"), make_user("olive")
    dataset = make_dataset(owner, name="clinic", epsilon_limit="10")
    job = make_dp_job(owner, dataset)
    entry = budget_reserve(job=job, epsilon=4, actor=owner)
    audit = AuditEntry.objects.create(action=AuditEntry.Action.BUDGET_CHANGED, actor=root, dataset=dataset,
                                      comment="initial")
    client = Client()
    client.force_login(root)
    return {"root": root, "owner": owner, "dataset": dataset, "job": job, "entry": entry, "audit": audit,
            "client": client}


@pytest.mark.parametrize("model", [LedgerEntry, AuditEntry])
def test_ledger_and_audit_rows_cannot_be_added_changed_or_deleted_even_by_a_superuser(world, model):
    request = RequestFactory().get("/")
    request.user = world["root"]
    model_admin = admin.site._registry[model]
    row = world["entry"] if model is LedgerEntry else world["audit"]
    assert world["root"].is_superuser
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, row)
    assert not model_admin.has_delete_permission(request, row)
    assert "delete_selected" not in model_admin.get_actions(request)

    client, name = world["client"], f"admin:privacy_{model._meta.model_name}"
    assert client.get(reverse(f"{name}_changelist")).status_code == 200
    assert client.get(reverse(f"{name}_change", args=[row.pk])).status_code == 200  # read-only view
    assert client.get(reverse(f"{name}_add")).status_code == 403
    assert client.post(reverse(f"{name}_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    field = "reason" if model is LedgerEntry else "comment"
    assert client.post(reverse(f"{name}_change", args=[row.pk]), {field: "rewritten"}).status_code == 403
    row.refresh_from_db()
    assert getattr(row, field) != "rewritten"


def test_a_budget_is_not_editable_directly_in_admin(world):
    client, budget = world["client"], world["dataset"].budget
    assert client.post(reverse("admin:privacy_privacybudget_change", args=[budget.pk]),
                       {"epsilon_limit": "99"}).status_code == 403
    page = client.get(reverse("admin:privacy_privatedataset_change", args=[world["dataset"].pk])).content.decode()
    assert 'name="budget-0-epsilon_limit"' not in page  # the inline shows it read-only
    assert 'name="approval_epsilon_threshold"' not in page
    assert reverse("admin:privacy_privacybudget_edit", args=[budget.pk]) in page
    budget.refresh_from_db()
    assert budget.epsilon_limit == Decimal(10)


def test_the_budget_form_changes_the_limit_and_threshold_through_the_audited_services(world):
    client, budget = world["client"], world["dataset"].budget
    url = reverse("admin:privacy_privacybudget_edit", args=[budget.pk])
    assert client.get(url).status_code == 200

    response = client.post(url, {"epsilon_limit": "12", "approval_epsilon_threshold": "3", "comment": "  "})
    assert response.status_code == 200 and "comment" in response.context["form"].errors
    response = client.post(url, {"epsilon_limit": "3", "approval_epsilon_threshold": "", "comment": "shrink"})
    assert "below what is already spent" in response.content.decode()  # 4 is reserved
    budget.refresh_from_db()
    assert budget.epsilon_limit == Decimal(10) and not AuditEntry.objects.exclude(pk=world["audit"].pk).exists()

    response = client.post(url, {"epsilon_limit": "12", "approval_epsilon_threshold": "3", "comment": "Q3 plan"})
    assert response.status_code == 302
    budget.refresh_from_db()
    world["dataset"].refresh_from_db()
    assert budget.epsilon_limit == Decimal(12) and world["dataset"].approval_epsilon_threshold == Decimal(3)
    entries = AuditEntry.objects.exclude(pk=world["audit"].pk).order_by("id")
    assert [(entry.action, entry.actor, entry.comment) for entry in entries] == [
        ("budget_changed", world["root"], "Q3 plan"), ("approval_threshold_changed", world["root"], "Q3 plan")]


def test_grants_made_and_revoked_in_admin_leave_audit_entries(world, make_user):
    client, dataset, dan = world["client"], world["dataset"], make_user("dan")
    response = client.post(reverse("admin:privacy_datasetgrant_add"),
                           {"dataset": dataset.pk, "user": dan.pk, "group": "", "can_read_records": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    grant = DatasetGrant.objects.get(user=dan)
    assert grant.granted_by == world["root"] and grant.can_read_records
    added = AuditEntry.objects.get(action=AuditEntry.Action.GRANT_ADDED)
    assert added.details == {"user": "dan", "group": None, "can_read_records": True}

    response = client.post(reverse("admin:privacy_datasetgrant_add"),
                           {"dataset": dataset.pk, "user": "", "group": ""})
    assert response.status_code == 200 and "exactly one user or one group" in response.content.decode()

    client.post(reverse("admin:privacy_datasetgrant_delete", args=[grant.pk]), {"post": "yes"})
    assert not DatasetGrant.objects.exists()
    assert AuditEntry.objects.get(action=AuditEntry.Action.GRANT_REMOVED).details["user"] == "dan"


def test_a_bulk_revocation_is_audited_grant_by_grant(world, make_user):
    from privacy.services import dataset_grant

    grants = [dataset_grant(dataset=world["dataset"], actor=world["root"], user=make_user(name)) for name in ("a1", "b2")]
    world["client"].post(reverse("admin:privacy_datasetgrant_changelist"),
                         {"action": "delete_selected", "_selected_action": [g.pk for g in grants], "post": "yes"})
    assert not DatasetGrant.objects.exists()
    assert AuditEntry.objects.filter(action=AuditEntry.Action.GRANT_REMOVED).count() == 2


def changelist_ids(client, name: str, **query) -> set[int]:
    response = client.get(reverse(f"admin:jobs_{name}_changelist"), query)
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def test_jobs_are_searchable_by_id_owner_kind_status_and_dataset(world, make_user):
    client, job = world["client"], world["job"]
    other = Job.objects.create(kind="generate", owner=make_user("dan"), params={}, status="failed", celery_task_id="x")
    assert changelist_ids(client, "job", q=str(job.pk)) == {job.pk}
    assert changelist_ids(client, "job", q="olive") == {job.pk}
    assert changelist_ids(client, "job", q="generate") == {other.pk}
    assert changelist_ids(client, "job", q="failed") == {other.pk}
    assert changelist_ids(client, "job", q="clinic") == {job.pk}
    assert changelist_ids(client, "job", status__exact="failed") == {other.pk}
    assert changelist_ids(client, "job", q="no such thing") == set()


def test_job_events_are_searchable_by_job_and_kind_and_read_only(world):
    client, job = world["client"], world["job"]
    metric = job_event_record(job_id=job.pk, kind="metric", payload={"step": 1})
    events = set(JobEvent.objects.filter(job=job).values_list("pk", flat=True))
    assert changelist_ids(client, "jobevent", q=str(job.pk)) == events
    assert changelist_ids(client, "jobevent", q="metric") == {metric.pk}
    assert client.get(reverse("admin:jobs_jobevent_add")).status_code == 403
    assert client.post(reverse("admin:jobs_jobevent_delete", args=[metric.pk]), {"post": "yes"}).status_code == 403


def test_a_data_scientist_does_not_get_into_admin(world):
    client = Client()
    client.force_login(world["owner"])
    response = client.get(reverse("admin:privacy_ledgerentry_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert PrivacyBudget.objects.get().epsilon_limit == Decimal(10)
