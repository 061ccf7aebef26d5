"""The JSON API (/api/): token authentication, the same access rules as the web pages, JSON
errors with a message and a 4xx code for every bad input, the OpenAPI schema, and the token
command and page."""
import hashlib
import io
import json
import zipfile
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from jobs.models import ApiToken, Artifact, Job
from jobs.services import job_event_record
from jobs.tokens import api_token_create, api_token_revoke
from privacy.datasets import dataset_write_jsonl
from privacy.demo_data import demo_records
from privacy.models import LedgerEntry, PrivateDataset
from privacy.services import dataset_grant, dataset_register
from tests.support.datasets import register_demo_dataset

pytestmark = pytest.mark.django_db

CSV = ("instruction,response\nWhat helps a cough?,Rest and fluids.\nWhat is a fever?,A raised temperature.\n"
       "How long does flu last?,About a week.\nWhen to see a doctor?,If the fever lasts three days.\n")


@pytest.fixture()
def world(tmp_path, settings, make_user):
    """olive owns "clinic" and granted it to gus; dan owns "bank"; cleo is a compliance officer.
    Each has an API token (world["key"][username])."""
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; passwords are unused here
    users = {name: make_user(name) for name in ("olive", "dan", "gus")}
    users["cleo"] = make_user("cleo", role="compliance_officer")
    clinic, _ = register_demo_dataset(tmp_path, users["olive"], n=40, seed=5)
    dataset_grant(dataset=clinic, actor=users["olive"], user=users["gus"])
    bank_file = tmp_path / "bank.jsonl"
    dataset_write_jsonl(bank_file, demo_records(domain="finance", n=20, seed=2))
    bank = dataset_register(owner=users["dan"], name="bank", source_path=bank_file, epsilon_limit="5")
    keys = {name: api_token_create(user=user, name="test")[1] for name, user in users.items()}
    return {**users, "clinic": clinic, "bank": bank, "key": keys, "tmp": tmp_path}


class Api:
    """The test client speaking to /api/ with one user's token."""

    def __init__(self, key: str | None, client: Client | None = None):
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def get(self, path, **query):
        return self.client.get(f"/api{path}", query, headers=self.headers)

    def post(self, path, body=None, **kwargs):
        if "data" in kwargs:  # multipart
            return self.client.post(f"/api{path}", kwargs["data"], headers=self.headers)
        return self.client.post(f"/api{path}", json.dumps(body or {}), content_type="application/json",
                                headers=self.headers)


def as_user(world, name) -> Api:
    return Api(world["key"][name])


def refused(response, status: int, fragment: str = "") -> dict:
    """The response is a JSON error with that status whose detail contains `fragment`."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert fragment.lower() in body["detail"].lower(), body
    return body


def upload(filename="notes.csv", content=CSV, **fields):
    """A multipart registration: the file and the form fields (name "notes", epsilon limit 3 unless given)."""
    data = {"name": "notes", "epsilon_limit": "3", **fields}
    data["file"] = io.BytesIO(content.encode() if isinstance(content, str) else content)
    data["file"].name = filename
    return data


def run_body(dataset, **fields):
    return {"dataset": dataset.pk, "preset": "demo", **fields}


@pytest.fixture()
def enqueued(monkeypatch):
    """Tasks handed to the broker (recorded here instead of sent: no worker runs in these tests)."""
    from celery import current_app

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, **kwargs: sent.append((name, kwargs)))
    return sent


ENDPOINTS = [
    ("get", "/me"), ("get", "/presets"), ("get", "/datasets"), ("post", "/datasets"), ("get", "/datasets/{clinic}"),
    ("get", "/datasets/{clinic}/budget"), ("post", "/runs"), ("get", "/runs"), ("get", "/jobs"),
    ("get", "/jobs/{job}"), ("post", "/jobs/{job}/cancel"), ("get", "/jobs/{job}/events"),
    ("get", "/artifacts/{artifact}/download"),
]


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_every_endpoint_refuses_no_token_a_bad_token_and_a_revoked_token(world, method, path):
    job = Job.objects.create(kind="selftest", owner=world["olive"], params={}, celery_task_id="t")
    artifact = Artifact.objects.create(job=job, kind="report", path="r.json", sha256="0" * 64, bytes=1)
    url = path.format(clinic=world["clinic"].pk, job=job.pk, artifact=artifact.pk)
    revoked = ApiToken.objects.get(user=world["olive"])
    api_token_revoke(token=revoked)
    logged_in = Client()
    logged_in.force_login(world["gus"])  # a browser session is not an API credential

    for api, fragment in ((Api(None), "Authorization: Bearer"), (Api(None, logged_in), "Authorization: Bearer"),
                          (Api("x" * 40), "unknown API token"), (Api(world["key"]["olive"]), "revoked")):
        response = getattr(api, method)(url, run_body(world["clinic"])) if method == "post" else api.get(url)
        refused(response, 401, fragment)
        assert response["WWW-Authenticate"].startswith("Bearer")
    job.refresh_from_db()
    assert job.status == "queued" and Job.objects.count() == 1 and PrivateDataset.objects.count() == 2


def test_a_token_is_stored_only_as_its_hash_and_notes_its_use(world):
    key = world["key"]["gus"]
    token = ApiToken.objects.get(user=world["gus"])
    assert token.key_sha256 == hashlib.sha256(key.encode()).hexdigest() and token.prefix == key[:8]
    assert key not in json.dumps([list(row) for row in ApiToken.objects.values_list()], default=str)
    assert token.last_used_at is None

    assert as_user(world, "gus").get("/me").json() == {"username": "gus", "roles": ["data_scientist"]}

    token.refresh_from_db()
    assert token.last_used_at is not None


def test_an_inactive_user_s_token_is_refused(world):
    world["gus"].is_active = False
    world["gus"].save()
    refused(as_user(world, "gus").get("/me"), 401, "inactive")


def test_datasets_are_listed_with_their_balance_for_whoever_may_see_them(world):
    listed = {name: {d["name"]: d for d in as_user(world, name).get("/datasets").json()}
              for name in ("olive", "dan", "gus", "cleo")}

    assert set(listed["olive"]) == {"clinic"} and set(listed["dan"]) == {"bank"}
    assert set(listed["gus"]) == {"clinic"} and set(listed["cleo"]) == {"clinic", "bank"}
    clinic = listed["olive"]["clinic"]
    assert clinic["usable"] and clinic["records_readable"] and clinic["owner"] == "olive"
    composition = clinic["budget"].pop("composition")
    assert clinic["budget"] | {"delta": 0} == {"epsilon_limit": 10.0, "delta": 0, "accountant": "prv", "spent": 0.0,
                                               "reserved": 0.0, "left": 10.0, "delta_spent": 0.0, "commits": 0,
                                               "nonprivate_releases": 0}
    assert composition["policy"] == "sequential" and composition["sequential"]["epsilon"] == "0"
    assert composition["composed"]["epsilon"] == "0" and composition["composed"]["accountant"] == "prv"
    assert composition["text"].startswith("sequential 0 (δ 0), composed 0 (PRV, δ ")
    assert listed["gus"]["clinic"]["usable"] and not listed["gus"]["clinic"]["records_readable"]
    assert not listed["cleo"]["clinic"]["usable"] and not listed["cleo"]["bank"]["records_readable"]


def test_a_dataset_one_may_not_see_is_not_found(world):
    clinic = world["clinic"].pk
    for path in (f"/datasets/{clinic}", f"/datasets/{clinic}/budget"):
        refused(as_user(world, "dan").get(path), 404, f"dataset {clinic} not found")
        assert as_user(world, "gus").get(path).status_code == 200
    refused(as_user(world, "olive").get("/datasets/999999"), 404, "not found")


def test_a_data_scientist_registers_a_csv_upload(world):
    response = as_user(world, "gus").post("/datasets", data=upload(delta="0.1", heldout_fraction="0"))

    assert response.status_code == 201, response.content
    body = response.json()
    dataset = PrivateDataset.objects.get(pk=body["id"])
    assert dataset.owner == world["gus"] and dataset.source_format == "csv" and dataset.record_count == 4
    assert dataset.budget.epsilon_limit == Decimal("3") and body["budget"]["left"] == 3.0 and body["usable"]
    private = world["tmp"] / "private"
    assert (private / dataset.path / "original.csv").read_text() == CSV
    assert not list(private.glob("upload-*"))  # the staging directory is gone


@pytest.mark.parametrize("fields,fragment", [
    ({"filename": "notes.txt"}, "unsupported file type"),
    ({"content": 'instruction,response\nq1,a1\nq2,\n"q3 unclosed,a3\n'}, "2 problems"),
    ({"content": b"\xff\xfe"}, "not valid UTF-8"),
    ({"epsilon_limit": "-1"}, "above 0"),
    ({"epsilon_limit": "NaN"}, "finite"),
    ({"epsilon_limit": "1e9"}, "too large"),
    ({"epsilon_limit": "ten"}, "must be a number"),
    ({"delta": "0.9"}, "not below 1/n"),
    ({"delta": "nan"}, "probability"),
    ({"heldout_fraction": "0.9"}, "from 0 to 0.5"),
    ({"canaries": "-2"}, "canary count"),
    ({"accountant": "gdp"}, "unknown accountant"),
    ({"name": " "}, "name is empty"),
    ({"filename": ".."}, "file"),
    ({"canaries": "many"}, "invalid request"),
])
def test_bad_registrations_are_refused_with_their_problems_and_leave_nothing(world, fields, fragment):
    body = refused(as_user(world, "gus").post("/datasets", data=upload(**fields)), 400, fragment)

    assert body["errors"] and all(isinstance(line, str) for line in body["errors"])
    assert PrivateDataset.objects.count() == 2
    assert sorted(p.name for p in (world["tmp"] / "private" / "datasets").iterdir()) == sorted(
        [world["clinic"].path.split("/")[-1], world["bank"].path.split("/")[-1]])
    assert not list((world["tmp"] / "private").glob("upload-*"))


def test_a_broken_csv_lists_each_problem_with_its_line(world):
    content = 'instruction,response\nq1,a1\nq2,\n"q3 unclosed,a3\n'
    body = refused(as_user(world, "gus").post("/datasets", data=upload(content=content)), 400)
    assert body["errors"][0].startswith("line 3: field 'response' is empty")
    assert body["errors"][1].startswith("line 4: broken CSV quoting")


def test_registration_without_a_file_or_as_a_compliance_officer_is_refused(world):
    data = upload()
    del data["file"]
    refused(as_user(world, "gus").post("/datasets", data=data), 400, "file")
    refused(as_user(world, "cleo").post("/datasets", data=upload()), 403, "may not register")
    refused(as_user(world, "gus").post("/datasets", data=upload(name="clinic")), 400,
            "already exists")
    assert PrivateDataset.objects.count() == 2


def test_a_run_submitted_through_the_api_reserves_its_epsilon_and_queues_stage_one(world, enqueued,
                                                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_user(world, "gus").post("/runs", run_body(world["clinic"], target_epsilon=2.5,
                                                                overrides=["generate.num_instructions=12"]))

    assert response.status_code == 201, response.content
    body = response.json()
    run = Job.objects.get(pk=body["id"])
    assert run.kind == "run" and run.owner == world["gus"] and body["status"] == "running"
    assert run.params["stages"]["generate"]["num_instructions"] == 12
    [stage] = body["children"]
    assert stage["kind"] == "dp_finetune" and stage["status"] == "queued"
    assert enqueued == [("jobs.dp_finetune", enqueued[0][1])]
    assert enqueued[0][1]["queue"] == "client" and enqueued[0][1]["task_id"] == Job.objects.get(pk=stage["id"]).celery_task_id
    assert body["summary"]["baseline"] == "knowledgesg" and body["summary"]["stages"]["dp_finetune"]["status"] == "queued"

    ledger = as_user(world, "olive").get(f"/datasets/{world['clinic'].pk}/budget").json()
    assert ledger["budget"]["reserved"] == 2.5 and ledger["budget"]["left"] == 7.5
    assert [(e["kind"], e["epsilon"], e["job"], e["actor"]) for e in ledger["ledger"]] == [("reserve", 2.5, stage["id"], "gus")]
    # the compliance officer reads every dataset's ledger, granted or not
    assert as_user(world, "cleo").get(f"/datasets/{world['clinic'].pk}/budget").json()["ledger"] == ledger["ledger"]
    assert as_user(world, "cleo").get(f"/datasets/{world['bank'].pk}/budget").json()["budget"]["epsilon_limit"] == 5.0


@pytest.mark.parametrize("fields,status,fragment", [
    ({"target_epsilon": -1}, 400, "at least 0.01"),
    ({"target_epsilon": 0}, 400, "at least 0.01"),
    ({"target_epsilon": 1e9}, 400, "at most 100"),
    ({"target_epsilon": "lots"}, 400, "target_epsilon"),
    ({"target_epsilon": 11}, 409, "at most 10.000000 is left"),
    ({"preset": "turbo"}, 400, "unknown preset"),
    ({"baseline": "magic"}, 400, "unknown baseline"),
    ({"domain": "astrology"}, 400, "domain must be one of"),
    ({"baseline": "nonprivate"}, 403, "non-private"),
    ({"overrides": ["generate.num_instructions"]}, 400, "stage.field=value"),
    ({"overrides": ["generate.colour=red"]}, 400, "has no field 'colour'"),
    ({"overrides": ["generate.num_instructions=many"]}, 400, "needs a int"),
    ({"overrides": ["distill.temperature=-1"]}, 400, "distill.temperature must be at least"),
    ({"overrides": "generate.num_instructions=3"}, 400, "overrides"),
    ({"dataset": "clinic"}, 400, "dataset"),
])
def test_bad_run_requests_are_refused_with_a_message_and_create_nothing(world, enqueued, fields, status, fragment):
    refused(as_user(world, "olive").post("/runs", run_body(world["clinic"]) | fields), status, fragment)
    assert not Job.objects.exists() and not LedgerEntry.objects.exists() and not enqueued


def test_nan_and_malformed_json_bodies_are_refused(world):
    api = as_user(world, "olive")
    response = api.client.post("/api/runs", f'{{"dataset": {world["clinic"].pk}, "target_epsilon": NaN}}',
                               content_type="application/json", headers=api.headers)
    refused(response, 400, "finite")
    response = api.client.post("/api/runs", "{not json", content_type="application/json", headers=api.headers)
    refused(response, 400, "parse")
    assert not Job.objects.exists()


def test_runs_only_on_datasets_one_may_use(world, enqueued):
    refused(as_user(world, "dan").post("/runs", run_body(world["clinic"])), 404, "not found")
    refused(as_user(world, "cleo").post("/runs", run_body(world["clinic"])), 403, "not submit runs")
    refused(as_user(world, "olive").post("/runs", {"dataset": 999999}), 404, "not found")
    assert not Job.objects.exists()

    dataset_grant(dataset=world["bank"], actor=world["dan"], user=world["cleo"])
    response = as_user(world, "cleo").post("/runs", run_body(world["bank"], target_epsilon=1))
    assert response.status_code == 201 and Job.objects.get(pk=response.json()["id"]).owner == world["cleo"]


def test_jobs_are_listed_filtered_and_shown_to_whoever_may_see_them(world):
    run = Job.objects.create(kind="run", owner=world["olive"], dataset=world["clinic"], status="running",
                             params={"baseline": "dp_direct"})
    stage = Job.objects.create(kind="dp_finetune", owner=world["olive"], dataset=world["clinic"], parent=run, params={})
    banking = Job.objects.create(kind="run", owner=world["dan"], dataset=world["bank"], status="succeeded",
                                 params={"baseline": "dp_direct"})

    def ids(name, path="/jobs", **query):
        return [job["id"] for job in as_user(world, name).get(path, **query).json()["jobs"]]

    assert ids("olive") == [stage.pk, run.pk] and ids("gus") == [stage.pk, run.pk] and ids("dan") == [banking.pk]
    assert ids("cleo") == [banking.pk, stage.pk, run.pk]
    assert ids("cleo", "/runs") == [banking.pk, run.pk] and ids("cleo", kind="dp_finetune") == [stage.pk]
    assert ids("cleo", status="succeeded") == [banking.pk] and ids("cleo", dataset=world["clinic"].pk) == [stage.pk, run.pk]
    page = as_user(world, "cleo").get("/jobs", limit=1, offset=1).json()
    assert page["count"] == 3 and [job["id"] for job in page["jobs"]] == [stage.pk]
    refused(as_user(world, "cleo").get("/jobs", status="sleeping"), 400, "unknown status")
    refused(as_user(world, "cleo").get("/jobs", kind="mining"), 400, "unknown kind")
    refused(as_user(world, "cleo").get("/jobs", limit=0), 400, "limit")

    detail = as_user(world, "gus").get(f"/jobs/{run.pk}").json()
    assert [child["id"] for child in detail["children"]] == [stage.pk] and detail["summary"]["run"] == run.pk
    assert as_user(world, "gus").get(f"/jobs/{stage.pk}").json()["summary"] is None
    for path in (f"/jobs/{run.pk}", f"/jobs/{run.pk}/events"):
        refused(as_user(world, "dan").get(path), 404, f"job {run.pk} not found")


def test_events_since_a_seq(world):
    job = Job.objects.create(kind="selftest", owner=world["olive"], params={}, celery_task_id="t")
    for step in range(4):
        job_event_record(job_id=job.pk, kind="metric", payload={"step": step, "loss": float("nan")})

    body = as_user(world, "olive").get(f"/jobs/{job.pk}/events", after=2).json()

    assert body["job"] == job.pk and body["status"] == "queued"
    assert [(event["seq"], event["payload"]) for event in body["events"]] == [(3, {"step": 2, "loss": None}),
                                                                            (4, {"step": 3, "loss": None})]
    assert [e["seq"] for e in as_user(world, "olive").get(f"/jobs/{job.pk}/events").json()["events"]] == [1, 2, 3, 4]
    refused(as_user(world, "olive").get(f"/jobs/{job.pk}/events", after="x"), 400, "after")
    refused(as_user(world, "olive").get(f"/jobs/{job.pk}/events", after=-1), 400, "after")


def test_cancel_a_run_with_its_stage_then_again_is_a_conflict(world, enqueued):
    response = as_user(world, "olive").post("/runs", run_body(world["clinic"], target_epsilon=1))
    run_id = response.json()["id"]
    stage_id = response.json()["children"][0]["id"]

    refused(as_user(world, "dan").post(f"/jobs/{run_id}/cancel"), 404, "not found")
    response = as_user(world, "gus").post(f"/jobs/{run_id}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert Job.objects.get(pk=stage_id).status == "cancelled"
    refused(as_user(world, "gus").post(f"/jobs/{run_id}/cancel"), 409, "already cancelled")
    refused(as_user(world, "gus").post(f"/jobs/{stage_id}/cancel"), 409, "already cancelled")


def test_artifacts_download_with_the_web_pages_checks(world, settings):
    job = Job.objects.create(kind="selftest", owner=world["olive"], dataset=world["clinic"], params={})
    folder = settings.KSG_ARTIFACT_DIR / f"api-test-{job.pk}"
    (folder / "adapter").mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text('{"ok": true}')
    (folder / "adapter" / "privacy.json").write_text('{"epsilon": 1.5}')
    report = Artifact.objects.create(job=job, kind="report", path=f"api-test-{job.pk}/report.json", sha256="0" * 64, bytes=12)
    adapter = Artifact.objects.create(job=job, kind="adapter", path=f"api-test-{job.pk}/adapter", sha256="0" * 64, bytes=2)
    outside = Artifact.objects.create(job=job, kind="model", path="../../../etc/passwd", sha256="0" * 64, bytes=1)

    listed = as_user(world, "gus").get(f"/jobs/{job.pk}").json()["artifacts"]
    assert {a["name"]: a["download_url"] for a in listed}["report.json"] == f"/api/artifacts/{report.pk}/download"
    response = as_user(world, "gus").get(f"/artifacts/{report.pk}/download")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b'{"ok": true}'
    response = as_user(world, "olive").get(f"/artifacts/{adapter.pk}/download")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.namelist() == ["adapter/privacy.json"]
    refused(as_user(world, "dan").get(f"/artifacts/{report.pk}/download"), 404, f"artifact {report.pk} not found")
    refused(as_user(world, "olive").get(f"/artifacts/{outside.pk}/download"), 404, "not on this server")


def test_token_calls_need_no_csrf_token(world, enqueued):
    client = Client(enforce_csrf_checks=True)
    response = Api(world["key"]["olive"], client).post("/runs", run_body(world["clinic"], target_epsilon=1))
    assert response.status_code == 201


def test_the_openapi_schema_lists_the_endpoints_and_the_bearer_scheme(client):
    response = client.get("/api/openapi.json")

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.") and schema["info"]["title"] == "KnowledgeSG API"
    assert {"/api/datasets", "/api/datasets/{dataset_id}", "/api/datasets/{dataset_id}/budget", "/api/runs",
            "/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/cancel", "/api/jobs/{job_id}/events",
            "/api/artifacts/{artifact_id}/download", "/api/me", "/api/presets"} <= set(schema["paths"])
    assert set(schema["paths"]["/api/datasets"]) == {"get", "post"}
    assert schema["components"]["securitySchemes"]["TokenAuth"] == {"type": "http", "scheme": "bearer"}
    assert "409" in schema["paths"]["/api/runs"]["post"]["responses"]
    assert client.get("/api/docs").status_code == 200


def test_presets_tell_what_a_run_can_be(world):
    body = as_user(world, "olive").get("/presets").json()
    assert {"demo", "paper"} <= set(body["presets"]) and body["baselines"]["dp_direct"] == ["dp_finetune", "evaluate"]
    assert body["domains"] == ["medical", "finance"]


def test_ksg_token_add_prints_the_key_once_and_ksg_token_revoke_ends_it(world):
    out = io.StringIO()
    call_command("ksg_token_add", "dan", "--name", "pipeline", stdout=out)
    key = out.getvalue().split("key (shown only now): ")[1].strip()
    assert as_user({"key": {"dan": key}}, "dan").get("/me").status_code == 200

    listing = io.StringIO()
    call_command("ksg_token_revoke", "--list", stdout=listing)
    assert f"{key[:8]}  dan" in listing.getvalue() and "pipeline" in listing.getvalue()
    call_command("ksg_token_revoke", key[:8], stdout=io.StringIO())
    refused(as_user({"key": {"dan": key}}, "dan").get("/me"), 401, "revoked")
    again = io.StringIO()
    call_command("ksg_token_revoke", key, stdout=again)  # a whole key works too
    assert "already revoked" in again.getvalue()

    with pytest.raises(CommandError, match="no user named"):
        call_command("ksg_token_add", "nobody", "--name", "x")
    with pytest.raises(CommandError, match="give the token a name"):
        call_command("ksg_token_add", "dan", "--name", " ")
    with pytest.raises(CommandError, match="no API token with prefix"):
        call_command("ksg_token_revoke", "zzzzzzzz")


def test_the_token_page_creates_shows_once_and_revokes_one_s_own_tokens(world, client):
    assert client.get("/jobs/api-tokens/").status_code == 302  # login first
    client.force_login(world["gus"])

    page = client.get("/jobs/api-tokens/")
    assert page.status_code == 200 and b'href="/jobs/api-tokens/">API tokens</a>' in page.content
    created = client.post("/jobs/api-tokens/", {"name": "notebook"})
    html = created.content.decode()
    key = html.split('<code class="api-key">')[1].split("</code>")[0]
    assert len(key) == 40 and "no-store" in created["Cache-Control"]
    assert "<script" not in html  # the page works without scripts (a content security policy forbids inline ones)
    assert as_user({"key": {"gus": key}}, "gus").get("/me").status_code == 200
    assert key not in client.get("/jobs/api-tokens/").content.decode()  # shown once

    assert client.post("/jobs/api-tokens/", {"name": ""}).status_code == 400
    token = ApiToken.objects.get(prefix=key[:8])
    others = ApiToken.objects.get(user=world["dan"])
    assert client.post(f"/jobs/api-tokens/{others.pk}/revoke/").status_code == 404
    assert client.post(f"/jobs/api-tokens/{token.pk}/revoke/").status_code == 302
    refused(as_user({"key": {"gus": key}}, "gus").get("/me"), 401, "revoked")
    others.refresh_from_db()
    assert others.revoked_at is None


def test_a_dataset_registered_per_patient_through_the_api_states_its_unit(world):
    content = "patient_id,instruction,response\n" + "".join(f"P{i % 3},question {i},answer {i}\n" for i in range(12))
    response = as_user(world, "gus").post("/datasets", data=upload(content=content, privacy_unit="patient_id",
                                                                   heldout_fraction="0.34", delta="0.1"))

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["privacy_unit"] == "patient_id" and body["epsilon_unit"] == "per patient_id"
    assert body["train_units"] == 2 and body["heldout_count"] == 4 and body["duplicate_records"] == 0
    ledger = as_user(world, "gus").get(f"/datasets/{body['id']}/budget").json()
    assert ledger["ledger"] == []
    refused(as_user(world, "gus").post("/datasets", data=upload(name="x", privacy_unit="patient_id")), 400,
            "missing privacy unit field")


def test_a_dataset_registered_with_identifying_fields_through_the_api_lists_them(world):
    content = "patient_id,patient_name,email,instruction,response\n" + "".join(
        f"P{i % 3},Ada Lovelace{i % 3},ada{i % 3}@example.org,question {i},answer {i}\n" for i in range(12))
    response = as_user(world, "gus").post("/datasets", data=upload(
        content=content, privacy_unit="patient_id", identifying_fields=["patient_name", "email"], delta="0.1"))

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["identifying_fields"] == ["patient_name", "email"]
    detail = as_user(world, "gus").get(f"/datasets/{body['id']}").json()
    assert detail["identifying_fields"] == ["patient_name", "email"]
    assert as_user(world, "olive").get(f"/datasets/{world['clinic'].pk}").json()["identifying_fields"] == []
    assert body["audit_canary_count"] == 0
    audited = as_user(world, "gus").post("/datasets", data=upload(name="audited", content=content, audit_canaries="10",
                                                                   delta="0.01"))
    assert audited.status_code == 201, audited.content
    assert audited.json()["audit_canary_count"] == 10
    refused(as_user(world, "gus").post("/datasets", data=upload(name="x", identifying_fields=["phone"])), 400,
            "the header has no 'phone' column")
