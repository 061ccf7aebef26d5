"""Job pages over HTTP: login, access, form errors, the events endpoint, artifact downloads."""
import pytest
from django.urls import reverse

from jobs.models import Artifact, Job
from jobs.services import job_event_record

pytestmark = pytest.mark.django_db


@pytest.fixture()
def ada_client(client, make_user):
    ada = make_user("ada")
    client.force_login(ada)
    client.user = ada
    return client


def make_job(owner) -> Job:
    return Job.objects.create(kind="selftest", owner=owner, params={"steps": 3}, celery_task_id="t")


@pytest.mark.parametrize("url", ["/jobs/", "/jobs/1/", "/jobs/1/events/"])
def test_pages_require_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_job_page_links_plotly_from_our_static_files(ada_client):
    job = make_job(ada_client.user)
    response = ada_client.get(reverse("jobs:detail", args=[job.pk]))
    assert response.status_code == 200
    assert b"/static/vendor/plotly.min.js" in response.content
    assert b"cdn" not in response.content.lower()


def test_other_users_jobs_are_not_found(ada_client, make_user):
    job = make_job(make_user("mallory"))
    for name in ("jobs:detail", "jobs:events"):
        assert ada_client.get(reverse(name, args=[job.pk])).status_code == 404
    assert ada_client.post(reverse("jobs:cancel", args=[job.pk])).status_code == 404
    assert str(job.pk) not in ada_client.get(reverse("jobs:list")).content.decode().split("<tbody>")[1]


def test_invalid_form_shows_the_error_next_to_the_field(ada_client):
    response = ada_client.post(reverse("jobs:submit", args=["selftest"]), {"steps": "0", "interval_seconds": "1", "fail_at_step": "0"})
    assert response.status_code == 400
    assert "Ensure this value is greater than or equal to 1" in response.content.decode()
    assert not Job.objects.exists()


def test_unknown_kind_is_404(ada_client):
    assert ada_client.post(reverse("jobs:submit", args=["mine_bitcoin"]), {}).status_code == 404


def test_events_endpoint_returns_events_after_a_seq(ada_client):
    job = make_job(ada_client.user)
    for step in range(4):
        job_event_record(job_id=job.pk, kind="metric", payload={"step": step})
    body = ada_client.get(reverse("jobs:events", args=[job.pk]), {"after": 2}).json()
    assert [event["seq"] for event in body["events"]] == [3, 4]
    assert ada_client.get(reverse("jobs:events", args=[job.pk]), {"after": "x"}).status_code == 400


def test_cancel_button_cancels_a_queued_job(ada_client):
    job = make_job(ada_client.user)
    response = ada_client.post(reverse("jobs:cancel", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED


def test_artifact_download_checks_access_and_serves_the_file(ada_client, make_user, settings):
    job = make_job(ada_client.user)
    folder = settings.KSG_ARTIFACT_DIR / f"view-test-{job.pk}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text('{"ok": true}')
    artifact = Artifact.objects.create(job=job, kind="report", path=f"view-test-{job.pk}/report.json", sha256="0" * 64, bytes=12)
    response = ada_client.get(reverse("jobs:artifact-download", args=[artifact.pk]))
    assert response.status_code == 200 and b"".join(response.streaming_content) == b'{"ok": true}'

    ada_client.force_login(make_user("mallory"))
    assert ada_client.get(reverse("jobs:artifact-download", args=[artifact.pk])).status_code == 404


def test_artifact_row_pointing_outside_the_directory_is_not_served(ada_client):
    job = make_job(ada_client.user)
    artifact = Artifact.objects.create(job=job, kind="report", path="../../../etc/passwd", sha256="0" * 64, bytes=1)
    assert ada_client.get(reverse("jobs:artifact-download", args=[artifact.pk])).status_code == 404


def test_budget_spending_kinds_have_no_generic_form(ada_client):
    response = ada_client.post(reverse("jobs:submit", args=["dp_finetune"]), {"target_epsilon": "1"})
    assert response.status_code == 404
    assert not Job.objects.exists()


@pytest.mark.parametrize("kind", ["generate", "filter", "distill", "finetune_target", "evaluate", "export"])
def test_pipeline_stages_cannot_be_submitted_alone_with_someone_elses_artifact(ada_client, make_user, kind):
    # mallory's adapter: a stage submitted on its own would sample from a model ada may not see
    other = make_job(make_user("mallory"))
    adapter = Artifact.objects.create(job=other, kind="adapter", path="x/adapter", sha256="0" * 64, bytes=1)
    response = ada_client.post(reverse("jobs:submit", args=[kind]), {
        "adapter_artifact": adapter.pk, "raw_artifact": adapter.pk, "kept_artifact": adapter.pk,
        "synthetic_artifact": adapter.pk, "run_id": other.pk})
    assert response.status_code == 404
    assert list(Job.objects.values_list("pk", flat=True)) == [other.pk]


def test_directory_artifact_downloads_as_a_zip(ada_client, settings):
    import io
    import zipfile

    job = make_job(ada_client.user)
    adapter = settings.KSG_ARTIFACT_DIR / f"view-test-{job.pk}" / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "privacy.json").write_text('{"epsilon": 1.5}')
    artifact = Artifact.objects.create(job=job, kind="adapter", path=f"view-test-{job.pk}/adapter", sha256="0" * 64, bytes=2)
    response = ada_client.get(reverse("jobs:artifact-download", args=[artifact.pk]))
    assert response.status_code == 200 and response["Content-Disposition"].endswith(f'job-{job.pk}-adapter.zip"')
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(archive.namelist()) == ["adapter/adapter_config.json", "adapter/privacy.json"]
    assert archive.read("adapter/privacy.json") == b'{"epsilon": 1.5}'


def test_artifact_rows_with_absolute_or_symlinked_paths_out_of_the_directory_are_not_served(ada_client, settings,
                                                                                         tmp_path):
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    job = make_job(ada_client.user)
    secret = tmp_path / "private-record.jsonl"
    secret.write_text('{"instruction": "my name is Ann Lee"}')
    folder = settings.KSG_ARTIFACT_DIR / f"view-test-{job.pk}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "link.jsonl").symlink_to(secret)
    for path in (str(secret), f"view-test-{job.pk}/link.jsonl", f"view-test-{job.pk}/../../{secret.name}"):
        artifact = Artifact.objects.create(job=job, kind="report", path=path, sha256="0" * 64, bytes=1)
        response = ada_client.get(reverse("jobs:artifact-download", args=[artifact.pk]))
        assert response.status_code == 404, path


def test_a_directory_artifact_never_zips_what_its_symlinks_point_at(ada_client, settings, tmp_path):
    import io
    import zipfile

    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    job = make_job(ada_client.user)
    private = tmp_path / "private"
    private.mkdir()
    (private / "records.jsonl").write_text('{"instruction": "my name is Ann Lee"}')
    adapter = settings.KSG_ARTIFACT_DIR / f"view-test-{job.pk}" / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "records.jsonl").symlink_to(private / "records.jsonl")  # a file link
    (adapter / "private").symlink_to(private, target_is_directory=True)  # a directory link
    artifact = Artifact.objects.create(job=job, kind="adapter", path=f"view-test-{job.pk}/adapter", sha256="0" * 64, bytes=2)
    response = ada_client.get(reverse("jobs:artifact-download", args=[artifact.pk]))
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.namelist() == ["adapter/adapter_config.json"]


def test_an_artifact_that_is_a_zip_bomb_is_served_as_its_bytes_and_never_opened(ada_client, settings, tmp_path):
    import io
    import zipfile

    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    job = make_job(ada_client.user)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("zeros.bin", b"\0" * (64 << 20))  # 64 MB of zeros in about 64 kB
    folder = settings.KSG_ARTIFACT_DIR / f"view-test-{job.pk}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.zip").write_bytes(bomb.getvalue())
    artifact = Artifact.objects.create(job=job, kind="report", path=f"view-test-{job.pk}/model.zip", sha256="0" * 64,
                                       bytes=len(bomb.getvalue()))
    response = ada_client.get(reverse("jobs:artifact-download", args=[artifact.pk]))
    assert response.status_code == 200 and b"".join(response.streaming_content) == bomb.getvalue()
    assert len(bomb.getvalue()) < 1 << 20
