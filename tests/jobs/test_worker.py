"""Jobs submitted through the service layer and executed by a real Celery worker thread."""
import hashlib
from pathlib import Path

import pytest
from celery.signals import task_postrun
from django.conf import settings

from jobs.models import Job
from jobs.services import job_cancel, job_submit
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def finished(job_id: int) -> Job:
    return wait_until(lambda: Job.objects.get(pk=job_id), lambda job: job.is_finished)


def test_selftest_runs_on_a_real_worker_with_ordered_gap_free_events(celery_session_worker, make_user):
    job = job_submit(owner=make_user("ada"), kind="selftest", params={"steps": 6, "interval_seconds": 0})

    job = finished(job.pk)

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 1
    events = list(job.events.order_by("seq"))
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert job.last_event_seq == len(events)
    statuses = [event.payload["status"] for event in events if event.kind == "status"]
    assert statuses == ["queued", "running", "succeeded"]
    metric_steps = [event.payload["step"] for event in events if event.kind == "metric"]
    assert metric_steps == [1, 2, 3, 4, 5, 6]
    assert events[-1].kind == "status"  # nothing after the final status
    assert [event.created_at for event in events] == sorted(event.created_at for event in events)


def test_selftest_report_is_an_artifact_with_its_checksum(celery_session_worker, make_user):
    job = finished(job_submit(owner=make_user("ada"), kind="selftest", params={"steps": 3, "interval_seconds": 0}).pk)

    (artifact,) = job.artifacts.all()
    data = (Path(settings.KSG_ARTIFACT_DIR) / artifact.path).read_bytes()
    assert artifact.kind == "report"
    assert artifact.sha256 == hashlib.sha256(data).hexdigest()
    assert artifact.bytes == len(data)


def test_a_failing_stage_ends_failed_with_its_error(celery_session_worker, make_user):
    job = job_submit(owner=make_user("ada"), kind="selftest", params={"steps": 5, "interval_seconds": 0, "fail_at_step": 3})

    job = finished(job.pk)

    assert job.status == Job.Status.FAILED
    assert "failed at step 3" in job.error
    assert job.events.filter(kind="metric").count() == 2
    assert job.events.order_by("-seq").first().payload == {"status": "failed", "error": job.error}


def test_cancel_stops_a_running_job_at_its_next_step(celery_session_worker, make_user):
    user = make_user("ada")
    job = job_submit(owner=user, kind="selftest", params={"steps": 1000, "interval_seconds": 0.05})
    wait_until(lambda: job.events.filter(kind="metric").count(), lambda n: n >= 2)

    job_cancel(job=job, actor=user)
    job = finished(job.pk)

    assert job.status == Job.Status.CANCELLED
    assert job.events.filter(kind="metric").count() < 1000


def test_redelivered_task_of_a_finished_job_changes_nothing(celery_session_worker, celery_session_app, make_user):
    job = finished(job_submit(owner=make_user("ada"), kind="selftest", params={"steps": 2, "interval_seconds": 0}).pk)
    seen = job.last_event_seq
    outcomes = []

    def on_postrun(task_id=None, retval=None, **kwargs):
        outcomes.append((task_id, retval))

    task_postrun.connect(on_postrun, weak=False)
    try:  # the same task id again, as the broker does after a worker dies before acking
        celery_session_app.send_task("jobs.selftest", args=[job.pk], queue="server", task_id=job.celery_task_id)
        wait_until(lambda: list(outcomes), lambda seen_outcomes: (job.celery_task_id, "skipped") in seen_outcomes)
    finally:
        task_postrun.disconnect(on_postrun)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.last_event_seq) == (Job.Status.SUCCEEDED, 1, seen)
