"""Integers from outside bounded to the database's signed 64-bit range (jobs.ids): the request
the schema fuzz found (a 500 on SQLite, where PostgreSQL answered 200), out-of-range ids on the
API and on the pages, query strings, forms and job parameters. These run on the session's
database and, when that is not SQLite, on SQLite as well (tests/ksg_web/test_fuzz_on_sqlite.py)."""
from types import SimpleNamespace

import pytest
from django.test import Client

from jobs.kinds import JobParamsError, params_parse
from jobs.models import Job
from jobs.tokens import api_token_create
from tests.privacy.factories import make_dataset, make_dp_job

pytestmark = pytest.mark.django_db

FOUND_BY_FUZZ = "/api/runs?dataset=21232749369849073549985311621120&offset=100000&limit=499"
LARGEST = 2**63 - 1  # the largest BigAutoField id
TOO_BIG = [2**63, 21232749369849073549985311621120]


@pytest.fixture()
def ada(make_user, settings, tmp_path):
    """ada with a dataset, a job, an API client with her token and a logged-in page client."""
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    user = make_user("ada")
    dataset = make_dataset(user, name="clinic")
    _, key = api_token_create(user=user, name="bounds")
    page = Client()
    page.force_login(user)
    return SimpleNamespace(user=user, dataset=dataset, job=make_dp_job(user, dataset),
                           api=Client(HTTP_AUTHORIZATION=f"Bearer {key}"), page=page)


def refused(response, status: int, *fragments: str) -> str:
    """The response is a JSON error with that status whose detail names every fragment."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    detail = response.json()["detail"]
    assert all(fragment in detail for fragment in fragments), detail
    return detail


def test_the_run_list_the_fuzz_found_is_a_400_that_names_the_bound_not_a_500(ada):
    refused(ada.api.get(FOUND_BY_FUZZ), 400, "dataset (query)", f"less than or equal to {LARGEST}")


@pytest.mark.parametrize("too_big", TOO_BIG)
@pytest.mark.parametrize("listing", ["/api/runs", "/api/jobs"])
def test_job_lists_refuse_a_dataset_or_offset_beyond_64_bits(ada, listing, too_big):
    refused(ada.api.get(f"{listing}?dataset={too_big}"), 400, "dataset (query)", str(LARGEST))
    refused(ada.api.get(f"{listing}?offset={too_big}"), 400, "offset (query)", str(LARGEST))
    refused(ada.api.get(f"{listing}?dataset=0"), 400, "dataset (query)", "greater than or equal to 1")


def test_the_largest_64_bit_id_and_offset_are_answered_not_refused(ada):
    response = ada.api.get(f"/api/jobs?dataset={LARGEST}&offset={LARGEST}")
    assert (response.status_code, response.json()) == (200, {"count": 0, "jobs": []})
    assert ada.api.get(f"/api/jobs?offset={LARGEST}").json()["count"] == 1  # the count ignores the page
    refused(ada.api.get(f"/api/jobs/{LARGEST}"), 404, f"job {LARGEST} not found")


@pytest.mark.parametrize("too_big", TOO_BIG)
@pytest.mark.parametrize("method, path", [
    ("get", "/api/jobs/{}"), ("get", "/api/jobs/{}/events"), ("post", "/api/jobs/{}/cancel"),
    ("post", "/api/runs/{}/export"), ("get", "/api/datasets/{}"), ("get", "/api/datasets/{}/budget"),
    ("get", "/api/artifacts/{}/download"),
])
def test_api_path_ids_beyond_64_bits_are_a_400_that_names_the_bound(ada, method, path, too_big):
    refused(getattr(ada.api, method)(path.format(too_big)), 400, "(path)", f"less than or equal to {LARGEST}")


def test_an_event_cursor_or_a_run_dataset_beyond_64_bits_is_a_400(ada):
    refused(ada.api.get(f"/api/jobs/{ada.job.pk}/events?after={2**63}"), 400, "after (query)", str(LARGEST))
    refused(ada.api.post("/api/runs", {"dataset": 2**63}, content_type="application/json"), 400,
            "dataset (body)", str(LARGEST))
    assert Job.objects.count() == 1


@pytest.mark.parametrize("too_big", TOO_BIG)
@pytest.mark.parametrize("path", ["/jobs/{}/", "/jobs/{}/report/", "/jobs/{}/timeline/", "/jobs/artifacts/{}/download/",
                                  "/datasets/{}/", "/serving/{}/", "/compliance/datasets/{}/audit/"])
def test_page_path_ids_beyond_64_bits_are_a_404(ada, path, too_big):
    assert ada.page.get(path.format(too_big)).status_code == 404


def test_page_path_ids_in_range_still_reach_their_page(ada):
    assert ada.page.get(f"/jobs/{ada.job.pk}/").status_code == 200
    assert ada.page.get(f"/datasets/{ada.dataset.pk}/").status_code == 200
    assert ada.page.get(f"/jobs/{LARGEST}/").status_code == 404  # in range, no such job


def test_page_query_ids_beyond_64_bits_are_refused_or_ignored(ada, make_user):
    response = ada.page.get(f"/jobs/{ada.job.pk}/events/?after={2**63}")
    assert response.status_code == 400 and b"after must be a whole number from 0" in response.content
    assert ada.page.get(f"/jobs/{ada.job.pk}/events/?after={LARGEST}").json()["events"] == []
    assert ada.page.get(f"/jobs/runs/compare/?dataset={2**63}").status_code == 404
    assert ada.page.get(f"/jobs/runs/new/?dataset={2**63}").status_code == 200  # only preselects a dataset
    officer = Client()
    officer.force_login(make_user("cleo", role="compliance_officer"))
    assert officer.get(f"/serving/audit/?deployment={2**63}").status_code == 404
    assert officer.get(f"/serving/audit/?deployment={LARGEST}").status_code == 200


def test_the_run_form_shows_errors_for_a_dataset_or_a_knob_out_of_range(ada):
    response = ada.page.post("/jobs/runs/new/", {
        "dataset": str(2**63), "preset": "demo", "baseline": "knowledgesg", "domain": "medical",
        "target_epsilon": "1", "base_model": "smollm2-135m-instruct", "professional_model": "smollm2-135m-instruct",
        "dp_finetune__steps": "9" * 30})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "dataset" in errors and "less than or equal to 1000000" in errors["dp_finetune__steps"][0]
    assert Job.objects.count() == 1


def test_a_job_parameter_without_a_bound_of_its_own_stops_at_the_largest_id():
    with pytest.raises(JobParamsError, match=f"export.run_id must be at most {LARGEST}"):
        params_parse("export", {"run_id": 2**63, "adapter_artifact": 1})
    assert params_parse("export", {"run_id": LARGEST, "adapter_artifact": 1}).run_id == LARGEST
