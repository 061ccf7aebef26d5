"""Every route of the URL conf refuses an anonymous user and a user without access to the object.

The routes are read from the URL conf itself, so a route added without a rule here fails the
test (ROUTES must name it). Object routes are called with the ids of another data scientist's
dataset, run, artifact, API token and grant; list routes may answer 200 but must not show them.
"""
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from jobs.models import Artifact, Job
from jobs.tokens import api_token_create
from privacy.services import dataset_grant
from synthesis.serving.deployments import serving_key_create
from synthesis.models import Deployment
from tests.privacy.factories import make_dataset

SECRET_NAME = "oncology-ward-7"

# route -> (kind, who may see it without being the object's owner)
#   public: anyone; login: any logged-in user, content filtered; object: the owner / grantee only;
#   officer: compliance officers and administrators only; api-*: the same under token auth;
#   serving: the OpenAI-compatible endpoints, which take serving keys only (401 otherwise).
ROUTES = {
    "": "public", "accounts/login/": "public", "accounts/logout/": "public",
    "api/openapi.json": "public", "api/docs": "public", "api/": "public",
    "jobs/": "login", "jobs/runs/": "login", "jobs/runs/new/": "login", "jobs/runs/compare/": "login",
    "jobs/api-tokens/": "login", "datasets/": "login", "datasets/new/": "login",
    "jobs/submit/<str:kind>/": "login",
    "jobs/<id:job_id>/": "object", "jobs/<id:job_id>/events/": "object", "jobs/<id:job_id>/cancel/": "object",
    "jobs/<id:job_id>/report/": "object", "jobs/<id:job_id>/report.json": "object",
    "jobs/<id:job_id>/report.csv": "object", "jobs/<id:job_id>/timeline/": "object",
    "jobs/<id:job_id>/export/": "object",
    "jobs/artifacts/<id:artifact_id>/download/": "object", "jobs/api-tokens/<id:token_id>/revoke/": "object",
    "datasets/<id:dataset_id>/": "object", "datasets/<id:dataset_id>/grants/": "object",
    "datasets/<id:dataset_id>/grants/<id:grant_id>/revoke/": "object",
    "datasets/<id:dataset_id>/composition/": "object", "datasets/<id:dataset_id>/statement/": "object",
    "compliance/": "officer", "compliance/approvals/": "officer", "compliance/ledger/": "officer",
    "compliance/ledger.csv": "officer", "compliance/ledger.json": "officer", "compliance/audit/": "officer",
    "compliance/audit.csv": "officer", "compliance/audit.json": "officer",
    "compliance/approvals/<id:run_id>/approve/": "officer", "compliance/approvals/<id:run_id>/reject/": "officer",
    "compliance/datasets/<id:dataset_id>/audit/": "officer",
    "api/me": "api-login", "api/presets": "api-login", "api/datasets": "api-login", "api/runs": "api-login",
    "api/jobs": "api-login",
    "api/datasets/<dataset_id>": "api-object", "api/datasets/<dataset_id>/budget": "api-object",
    "api/jobs/<job_id>": "api-object", "api/jobs/<job_id>/cancel": "api-object",
    "api/jobs/<job_id>/events": "api-object", "api/artifacts/<artifact_id>/download": "api-object",
    "api/runs/<run_id>/export": "api-object",
    "v1/models": "serving", "v1/chat/completions": "serving",
    "serving/": "login", "serving/<id:deployment_id>/": "object", "serving/<id:deployment_id>/stop/": "object",
    "serving/keys/<id:key_id>/revoke/": "object", "serving/deploy/<id:job_id>/": "object",
    "serving/audit/": "officer", "serving/audit.csv": "officer",
}


def _routes(patterns=None, prefix: str = ""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if str(pattern.pattern) != "admin/":  # Django admin: staff only, tested in tests/privacy/test_admin.py
                yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


@pytest.fixture()
def world(db, make_user, tmp_path, settings):
    settings.KSG_ARTIFACT_DIR = tmp_path
    owner, outsider, grantee = make_user("olive"), make_user("mallory"), make_user("gina")
    dataset = make_dataset(owner, name=SECRET_NAME)
    grant = dataset_grant(dataset=dataset, actor=owner, user=grantee)
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="awaiting_approval",
                             params={"baseline": "knowledgesg", "preset": "demo", "stages": {}})
    (tmp_path / "report.json").write_text("{}")
    artifact = Artifact.objects.create(job=run, kind="report", path="report.json", sha256="0" * 64, bytes=2)
    token, _ = api_token_create(user=owner, name="notebook")
    _, outsider_key = api_token_create(user=outsider, name="mine")
    deployment = Deployment.objects.create(name="oncology-model", run=run, adapter_artifact=artifact,
                                           base_model="tiny", created_by=owner)
    key, _ = serving_key_create(actor=owner, name="ward app", deployments=[deployment])
    ids = {"job_id": run.pk, "run_id": run.pk, "dataset_id": dataset.pk, "artifact_id": artifact.pk,
           "token_id": token.pk, "grant_id": grant.pk, "kind": "selftest", "deployment_id": deployment.pk,
           "key_id": key.pk}
    return {"outsider": outsider, "outsider_key": outsider_key, "ids": ids, "run": run}


def _url(route: str, ids: dict) -> str:
    url = "/" + route
    for name, value in ids.items():
        url = url.replace(f"<id:{name}>", str(value)).replace(f"<str:{name}>", str(value)).replace(f"<{name}>", str(value))
    assert "<" not in url, f"no id for {route}"
    return url


def test_every_route_has_an_access_rule():
    assert set(_routes()) == set(ROUTES), "classify new routes in ROUTES"


@pytest.mark.parametrize("method", ["get", "post"])
def test_every_route_refuses_an_anonymous_user(world, method):
    client = Client()
    for route, rule in ROUTES.items():
        if rule == "public":
            continue
        response = getattr(client, method)(_url(route, world["ids"]))
        if rule.startswith("api") or rule == "serving":
            assert response.status_code in (401, 405), (method, route, response.status_code)
        else:
            assert response.status_code in (302, 405), (method, route, response.status_code)
            if response.status_code == 302:
                assert response["Location"].startswith("/accounts/login/"), (route, response["Location"])
        assert SECRET_NAME.encode() not in response.content, route


@pytest.mark.parametrize("method", ["get", "post"])
def test_every_route_refuses_a_user_without_access(world, method):
    client = Client()
    client.force_login(world["outsider"])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {world['outsider_key']}"}
    for route, rule in ROUTES.items():
        if rule == "public" or route == "accounts/logout/":
            continue
        headers = auth if rule.startswith("api") else {}
        response = getattr(client, method)(_url(route, world["ids"]), **headers)
        if rule in ("object", "api-object", "officer"):
            assert response.status_code in (403, 404, 405), (method, route, response.status_code)
        elif rule == "serving":  # a platform token or session is not a serving key
            assert response.status_code in (401, 405), (method, route, response.status_code)
        else:  # a page or list of their own: it may answer, but shows nothing of another user's
            assert response.status_code in (200, 302, 400, 405, 422), (method, route, response.status_code)
        assert SECRET_NAME.encode() not in response.content, (method, route)
    world["run"].refresh_from_db()
    assert world["run"].status == "awaiting_approval" and not world["run"].cancel_requested
    assert Deployment.objects.get().active and not Deployment.objects.get().keys.get().revoked_at
