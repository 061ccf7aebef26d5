"""schemathesis against the API's own OpenAPI schema: every operation called with requests
generated from its schema (valid and invalid), in-process over WSGI, with a real token. No
response is a 500; every refusal is a 4xx whose JSON says what is wrong; what the schema
promises for a success is what comes back."""
import json

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from jobs.tokens import api_token_create
from tests.privacy.factories import make_dataset
from tests.support.wsgi import wsgi_in_test_transaction

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture()
def wsgi_calls():
    with wsgi_in_test_transaction():
        yield


@pytest.fixture()
def token(wsgi_calls, make_user, settings, tmp_path, monkeypatch):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    user = make_user("ada")
    # A budget too small for any DP run: a request that parses still ends in a refusal, and
    # nothing generated here is ever queued for a worker.
    make_dataset(user, name="clinic", epsilon_limit="0.000001")
    monkeypatch.setattr("jobs.services._job_enqueue", lambda *args: None)
    _, key = api_token_create(user=user, name="schemathesis")
    return key


def refusal_says_why(ctx, response, case):
    """A 4xx answered in JSON carries a non-empty `detail`."""
    if 400 <= response.status_code < 500 and response.headers.get("Content-Type", [""])[0].startswith("application/json"):
        body = json.loads(response.content)
        assert body.get("detail"), f"{case.method} {case.path}: {response.status_code} without a detail: {body}"


@schema.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])
def test_every_api_operation_holds_to_its_schema_and_never_fails_with_a_500(case, token):
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    refusal_says_why(None, response, case)
