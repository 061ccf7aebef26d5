"""Hostile and malformed input against the API and the forms (hypothesis): never a 500, every
refusal a 4xx that says what is wrong, and nothing registered or submitted from bad input."""
import io
import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from jobs.models import Job
from jobs.tokens import api_token_create
from privacy.models import PrivateDataset
from tests.privacy.factories import make_dataset

pytestmark = pytest.mark.django_db

HYPOTHESIS = hypothesis_settings(max_examples=60, deadline=None, derandomize=True,
                                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

NASTY_NUMBERS = st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "-1", "0", "-0", "1e-400",
                                 "99999999999999999999999999", "1e5000", "0x10", "", " ", "1,5", "١٠", "None",
                                 "'; DROP TABLE privacy_ledgerentry; --", "1 OR 1=1", "\x00", "2" * 400])
NASTY_TEXT = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["../../etc/passwd", "..\\..\\boot.ini", "/etc/shadow", "a\x00b", "'; DROP TABLE auth_user; --",
                     "<script>alert(1)</script>", "ﷺ" * 50, "\u202e\u0000", "%00", "x" * 5000, ""]),
)
NUMBER_OR_TEXT = st.one_of(NASTY_NUMBERS, st.floats(allow_nan=True, allow_infinity=True).map(repr),
                           st.integers(min_value=-10**30, max_value=10**30).map(str), NASTY_TEXT)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(min_value=-10**20, max_value=10**20),
              NASTY_TEXT),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=20), children, max_size=4)),
    max_leaves=12,
)


@pytest.fixture()
def api(make_user, settings, tmp_path):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    user = make_user("ada")
    # A budget too small for any DP run: a body that parses still ends in a refusal, so no fuzzed
    # run is ever queued for a worker.
    dataset = make_dataset(user, name="clinic", epsilon_limit="0.000001")
    _, key = api_token_create(user=user, name="fuzz")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client, user, dataset


def _assert_clear_refusal(response, what):
    assert response.status_code < 500, (what, response.status_code, response.content[:500])
    if response.status_code >= 400 and response["Content-Type"].startswith("application/json"):
        body = json.loads(response.content)
        assert body.get("detail"), (what, body)


@HYPOTHESIS
@given(name=NASTY_TEXT, epsilon=NUMBER_OR_TEXT, delta=NUMBER_OR_TEXT, accountant=NASTY_TEXT,
       content=st.one_of(st.binary(max_size=400), st.sampled_from([
           b'{"instruction": "a", "response": "b"',                # broken JSON
           b'instruction,response\n"unterminated,quote\n',         # broken CSV quoting
           b"\xff\xfe\x00garbage", b"", b"\n\n\n", b'{"instruction": 1, "response": null}\n',
           b'[{"instruction": "a"}]', b"PK\x03\x04" + b"\x00" * 100])),  # a zip where text belongs
       filename=st.sampled_from(["d.jsonl", "d.csv", "d.json", "../../d.jsonl", "d.exe", "d", "d.zip"]))
def test_registering_a_dataset_from_bad_input_is_a_clear_4xx(api, name, epsilon, delta, accountant, content, filename):
    client, _, _ = api
    before = PrivateDataset.objects.count()
    response = client.post("/api/datasets", {
        "name": name, "epsilon_limit": epsilon, "delta": delta, "accountant": accountant,
        "file": _named(content, filename)})
    _assert_clear_refusal(response, (name, epsilon, delta))
    assert response.status_code != 201 or PrivateDataset.objects.count() == before + 1


def _named(content: bytes, filename: str):
    upload = io.BytesIO(content)
    upload.name = filename
    return upload


@HYPOTHESIS
@given(body=JSON_VALUES)
def test_submitting_a_run_from_arbitrary_json_is_a_clear_4xx(api, body):
    client, _, dataset = api
    if isinstance(body, dict) and "dataset" not in body:
        body = {"dataset": dataset.pk, **body}
    response = client.post("/api/runs", json.dumps(body), content_type="application/json")
    _assert_clear_refusal(response, body)
    assert response.status_code >= 400, body
    assert not Job.objects.exists()


@HYPOTHESIS
@given(target_epsilon=NUMBER_OR_TEXT, preset=NASTY_TEXT, override=NASTY_TEXT)
def test_run_parameters_from_hostile_values_are_a_clear_4xx(api, target_epsilon, preset, override):
    client, _, dataset = api
    body = {"dataset": dataset.pk, "preset": preset or "demo", "target_epsilon": target_epsilon, "overrides": [override]}
    response = client.post("/api/runs", json.dumps(body), content_type="application/json")
    _assert_clear_refusal(response, body)
    assert response.status_code >= 400, body  # none of these is a valid run
    assert not Job.objects.exists()


@HYPOTHESIS
@given(segment=st.one_of(NASTY_TEXT, st.integers(min_value=-10**25, max_value=10**25).map(str)),
       after=NUMBER_OR_TEXT)
def test_ids_and_cursors_from_hostile_values_are_a_clear_4xx(api, segment, after):
    client, _, _ = api
    from urllib.parse import quote

    part = quote(segment, safe="")
    for url in (f"/api/jobs/{part}", f"/api/jobs/{part}/events?after={quote(after)}", f"/api/datasets/{part}",
                f"/api/artifacts/{part}/download", f"/api/datasets/{part}/budget", f"/jobs/artifacts/{part}/download/",
                f"/api/runs?dataset={part}&offset={quote(after)}", f"/api/jobs?offset={part}&dataset={quote(after)}"):
        _assert_clear_refusal(client.get(url), url)


@HYPOTHESIS
@given(name=NASTY_TEXT, epsilon=NUMBER_OR_TEXT, delta=NUMBER_OR_TEXT, heldout=NUMBER_OR_TEXT,
       canaries=NUMBER_OR_TEXT, content=st.binary(max_size=300))
def test_the_upload_form_shows_errors_for_bad_input(api, name, epsilon, delta, heldout, canaries, content):
    _, user, _ = api
    client = Client()
    client.force_login(user)
    before = PrivateDataset.objects.count()
    response = client.post("/datasets/new/", {"name": name, "epsilon_limit": epsilon, "delta": delta,
                                              "heldout_fraction": heldout, "plant_canaries": "on",
                                              "canaries": canaries, "canary_repeats": "1",
                                              "accountant": "prv", "file": _named(content, "d.jsonl")})
    assert response.status_code in (200, 302, 400), response.status_code
    if response.status_code != 302:  # the form again, with the problem next to its field
        assert b"errorlist" in response.content or b"form-errors" in response.content
        assert PrivateDataset.objects.count() == before


@pytest.mark.parametrize("url", ["/api/datasets", "/datasets/new/"])
def test_a_two_gigabyte_upload_claim_is_refused_before_the_body_is_read(api, url):
    client, user, _ = api
    client.force_login(user)
    response = client.post(url, b"", content_type="multipart/form-data; boundary=x", CONTENT_LENGTH=str(2 * 1024**3))
    assert response.status_code == 413
    assert "at most" in json.loads(response.content)["detail"]
    assert client.post(url, b"", content_type="application/json", CONTENT_LENGTH="lots").status_code == 400
