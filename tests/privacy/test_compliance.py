"""The compliance pages: who may see them, what the dashboard and the audit report show, the
ledger and audit-trail filters, and exports that parse back to every column."""
import csv
import io
import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job
from privacy.compliance import burndown, compliance_snapshot
from privacy.models import LedgerEntry
from privacy.services import (budget_commit, budget_limit_change, budget_nonprivate_release, budget_release,
                              budget_reserve, dataset_grant)
from tests.privacy.factories import make_dataset, make_dp_job

pytestmark = pytest.mark.django_db

MECHANISM = {"sample_rate": 0.01, "noise_multiplier": 1.1, "steps": 100, "accountant": "prv",
             "library_versions": {"opacus": "1.5"}}


@pytest.fixture()
def world(make_user):
    """Two datasets; on `clinic` a settled DP job (reserve 2, commit 1.5, release 0.5), a running
    one (reserve 3), and a non-private release; a budget change in the audit trail."""
    owner, other = make_user("olive"), make_user("dan")
    officer, admin = make_user("cleo", role="compliance_officer"), make_user("root", role="admin")
    clinic, bank = make_dataset(owner, name="clinic"), make_dataset(other, name="bank", epsilon_limit="5")
    clinic.allow_nonprivate_baselines = True
    clinic.save()
    settled, running = make_dp_job(owner, clinic), make_dp_job(owner, clinic)
    budget_reserve(job=settled, epsilon=2, actor=owner)
    budget_commit(job=settled, epsilon=1.5, delta=1e-5, mechanism=MECHANISM, actor=owner)
    budget_release(job=settled, actor=owner)
    budget_reserve(job=running, epsilon=3, actor=owner)
    budget_nonprivate_release(job=make_dp_job(owner, clinic), actor=owner)
    budget_reserve(job=make_dp_job(other, bank), epsilon=1, actor=other)
    budget_limit_change(dataset=clinic, epsilon_limit="12", actor=admin, comment="=HYPERLINK(\"x\") approved by board")
    return {"owner": owner, "other": other, "officer": officer, "admin": admin, "clinic": clinic, "bank": bank,
            "settled": settled, "running": running}


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


PAGES = [("compliance:dashboard", False), ("compliance:approvals", False), ("compliance:ledger", False),
         ("compliance:ledger-csv", False), ("compliance:ledger-json", False), ("compliance:audit", False),
         ("compliance:audit-csv", False), ("compliance:audit-json", False), ("compliance:dataset-audit", True)]


@pytest.mark.parametrize("name,needs_dataset", PAGES)
def test_only_officers_and_administrators_see_the_compliance_pages(world, name, needs_dataset):
    url = reverse(name, args=[world["clinic"].pk] if needs_dataset else [])
    anonymous = client_for(None).get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    assert client_for(world["owner"]).get(url).status_code == 403  # a data scientist, even the dataset's owner
    assert client_for(world["officer"]).get(url).status_code == 200
    assert client_for(world["admin"]).get(url).status_code == 200


def test_the_navigation_links_to_compliance_only_for_officers(world):
    link = f'href="{reverse("compliance:dashboard")}"'
    assert link in client_for(world["officer"]).get(reverse("jobs:list")).content.decode()
    assert link in client_for(world["admin"]).get(reverse("jobs:list")).content.decode()
    assert link not in client_for(world["owner"]).get(reverse("jobs:list")).content.decode()


def test_the_snapshot_has_every_budget_from_the_ledger(world):
    budgets = {row["name"]: row for row in compliance_snapshot()["budgets"]}
    clinic = budgets["clinic"]
    assert (clinic["limit"], clinic["spent"], clinic["reserved"], clinic["left"]) == (
        "12.000000", "1.500000", "3.000000", "7.500000")
    assert clinic["nonprivate_releases"] == 1 and clinic["used"] == "4.500000"
    assert (budgets["bank"]["reserved"], budgets["bank"]["left"]) == ("1.000000", "4.000000")


def test_the_burndown_is_the_cumulative_committed_epsilon(world):
    later = make_dp_job(world["owner"], world["clinic"])
    budget_reserve(job=later, epsilon=1, actor=world["owner"])
    budget_commit(job=later, epsilon=0.25, delta=1e-5, mechanism=MECHANISM, actor=world["owner"])

    series = {item["name"]: item for item in burndown()}
    assert [point["spent"] for point in series["clinic"]["points"]] == ["0.000000", "1.500000", "1.750000"]
    assert series["clinic"]["limit"] == "12.000000" and [p["spent"] for p in series["bank"]["points"]] == ["0.000000"]
    times = [point["time"] for point in series["clinic"]["points"]]
    assert times == sorted(times)


def test_the_dashboard_renders_budgets_runs_and_its_data_without_inline_code(world):
    run = Job.objects.create(kind="run", owner=world["owner"], dataset=world["clinic"], status="awaiting_approval",
                             params={"baseline": "dp_direct", "stages": {}})
    response = client_for(world["officer"]).get(reverse("compliance:dashboard"))
    html = response.content.decode()
    assert 'id="budget-row-%d"' % world["clinic"].pk in html and "7.500000" in html
    snapshot = json.loads(re.search(r'<script id="compliance-snapshot" type="application/json">(.*?)</script>',
                                    html, re.S).group(1))
    assert {row["id"]: row["status"] for row in snapshot["runs"]}[run.pk] == "awaiting_approval"
    assert snapshot["awaiting_approval"] == 1
    assert_no_inline_code(html)
    assert "vendor/plotly.min.js" in html and "js/compliance.js" in html


def assert_no_inline_code(html: str) -> None:
    for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S):
        assert "src=" in attributes or 'type="application/json"' in attributes, attributes
        assert "src=" not in attributes or not body.strip()
    assert not re.search(r"\son[a-z]+\s*=", html), re.search(r"\son[a-z]+\s*=", html)


# -- the ledger ----------------------------------------------------------------------------

def ledger_ids(client, **query) -> list[int]:
    response = client.get(reverse("compliance:ledger"), query)
    assert response.status_code == 200
    return [entry.pk for entry in response.context["page"]]


def test_the_ledger_filters_by_dataset_user_kind_and_dates(world):
    client = client_for(world["officer"])
    clinic, bank = world["clinic"], world["bank"]
    everything = list(LedgerEntry.objects.order_by("created_at", "id").values_list("pk", flat=True))
    assert ledger_ids(client) == everything and len(everything) == 6

    assert ledger_ids(client, dataset=bank.pk) == list(LedgerEntry.objects.filter(budget__dataset=bank).values_list("pk", flat=True))
    assert ledger_ids(client, user="dan") == ledger_ids(client, dataset=bank.pk)
    commits = ledger_ids(client, dataset=clinic.pk, kind="commit")
    assert [LedgerEntry.objects.get(pk=pk).epsilon for pk in commits] == [Decimal("1.5")]
    today = timezone.localdate()
    assert ledger_ids(client, date_from=today.isoformat(), date_to=today.isoformat()) == everything
    assert ledger_ids(client, date_to=(today - timedelta(days=1)).isoformat()) == []
    assert ledger_ids(client, date_from=(today + timedelta(days=1)).isoformat()) == []


def test_a_filter_that_does_not_parse_is_a_bad_request(world):
    client = client_for(world["officer"])
    assert client.get(reverse("compliance:ledger"), {"date_from": "yesterday"}).status_code == 400
    assert client.get(reverse("compliance:ledger"), {"kind": "borrow"}).status_code == 400
    assert client.get(reverse("compliance:ledger-csv"), {"dataset": "999999"}).status_code == 400
    assert client.get(reverse("compliance:audit"), {"date_from": "2024-02-02", "date_to": "2024-02-01"}).status_code == 400


def streamed(response) -> str:
    return b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()


def test_the_ledger_csv_export_has_every_column_of_the_filtered_rows(world):
    response = client_for(world["officer"]).get(reverse("compliance:ledger-csv"), {"dataset": world["clinic"].pk})
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(streamed(response))))

    expected = LedgerEntry.objects.filter(budget__dataset=world["clinic"]).order_by("created_at", "id")
    assert [int(row["id"]) for row in rows] == [entry.pk for entry in expected]
    commit = next(row for row in rows if row["kind"] == "commit")
    entry = LedgerEntry.objects.get(pk=commit["id"])
    assert commit["epsilon"] == "1.500000" and float(commit["delta"]) == 1e-5
    assert json.loads(commit["mechanism"]) == MECHANISM
    assert (commit["dataset"], commit["actor"], commit["job_id"], commit["reason"]) == (
        "clinic", "olive", str(world["settled"].pk), entry.reason)
    assert {field.name for field in LedgerEntry._meta.fields} - {"budget", "job"} <= set(rows[0])


def test_the_ledger_json_export_parses_back_with_its_filters(world):
    response = client_for(world["officer"]).get(reverse("compliance:ledger-json"), {"kind": "reserve", "user": "olive"})
    body = json.loads(response.content)
    assert body["filters"]["kind"] == "reserve" and body["filters"]["user"] == "olive"
    assert body["count"] == len(body["entries"]) == 2
    assert {entry["job_id"] for entry in body["entries"]} == {world["settled"].pk, world["running"].pk}
    assert all(entry["kind"] == "reserve" and entry["actor"] == "olive" for entry in body["entries"])
    assert [Decimal(entry["epsilon"]) for entry in body["entries"]] == [Decimal(2), Decimal(3)]


def test_the_ledger_page_links_exports_with_the_same_filters(world):
    html = client_for(world["officer"]).get(reverse("compliance:ledger"), {"kind": "commit", "page": "1"}).content.decode()
    assert f'{reverse("compliance:ledger-csv")}?kind=commit"' in html
    assert f'{reverse("compliance:ledger-json")}?kind=commit"' in html


# -- the audit trail -------------------------------------------------------------------------

def test_the_audit_trail_filters_and_exports(world):
    dataset_grant(dataset=world["bank"], actor=world["other"], user=world["owner"])
    client = client_for(world["officer"])

    page = client.get(reverse("compliance:audit"), {"kind": "budget_changed"}).context["page"]
    assert [entry.action for entry in page] == ["budget_changed"]
    page = client.get(reverse("compliance:audit"), {"dataset": world["bank"].pk, "user": "dan"}).context["page"]
    assert [entry.action for entry in page] == ["grant_added"]

    rows = list(csv.DictReader(io.StringIO(streamed(client.get(reverse("compliance:audit-csv"), {"kind": "budget_changed"})))))
    assert len(rows) == 1 and rows[0]["actor"] == "root"
    assert rows[0]["comment"] == "'=HYPERLINK(\"x\") approved by board"  # a spreadsheet shows it, never runs it
    change = json.loads(rows[0]["details"])["epsilon_limit"]
    assert (Decimal(change["before"]), Decimal(change["after"])) == (10, 12)

    body = json.loads(client.get(reverse("compliance:audit-json"), {"kind": "budget_changed"}).content)
    assert body["entries"][0]["comment"] == "=HYPERLINK(\"x\") approved by board"  # JSON keeps it as written
    assert Decimal(body["entries"][0]["details"]["epsilon_limit"]["after"]) == 12


# -- the printable audit report of a dataset ------------------------------------------------

def test_the_dataset_audit_report_has_balance_ledger_audit_and_runs(world):
    run = Job.objects.create(kind="run", owner=world["owner"], dataset=world["clinic"], params={"baseline": "knowledgesg"})
    world["settled"].parent = run
    world["settled"].save()
    response = client_for(world["officer"]).get(reverse("compliance:dataset-audit", args=[world["clinic"].pk]))
    html = response.content.decode()

    assert "1.500000" in html and "7.500000 left" in html and "1 non-private release" in html
    ledger_table = html[html.index('id="ledger-table"'):html.index('id="audit-table"')]
    assert ledger_table.count("<tr>") == 1 + LedgerEntry.objects.filter(budget__dataset=world["clinic"]).count()
    assert "approved by board" in html[html.index('id="audit-table"'):]
    runs = {row["job"].pk: row for row in response.context["runs"]}
    assert runs[run.pk]["epsilon_committed"] == Decimal("1.5")  # its stage's commit counts for the run
    assert "bank" not in ledger_table
    assert "css/print.css" in html and 'media="print"' in html and 'id="print-audit"' in html
    assert_no_inline_code(html)
    assert json.loads(re.search(r'<script id="burndown-data" type="application/json">(.*?)</script>', html, re.S)
                      .group(1))[0]["name"] == "clinic"


def test_an_unknown_dataset_report_is_404(world):
    assert client_for(world["officer"]).get(reverse("compliance:dataset-audit", args=[999999])).status_code == 404

