"""The job services without a worker: parameters, the event counter, attempts, cancelling."""
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs.kinds import JobParamsError, params_parse
from jobs.models import Job, JobEvent
from jobs.services import (
    JobStateError,
    artifact_record,
    job_cancel,
    job_event_record,
    job_start,
)


def make_job(owner, **fields) -> Job:
    return Job.objects.create(kind="selftest", owner=owner, params={}, celery_task_id="task-1", **fields)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"steps": 10_001}, "steps must be at most 10000"),
        ({"steps": "ten"}, "steps must be a whole number"),
        ({"steps": True}, "steps must be a whole number"),
        ({"interval_seconds": float("nan")}, "interval_seconds must be a finite number"),
        ({"interval_seconds": -1}, "interval_seconds must be at least 0.0"),
        ({"learning_rate": 1}, "unknown parameter(s) learning_rate"),
    ],
)
def test_bad_parameters_are_refused_with_what_to_fix(raw, message):
    with pytest.raises(JobParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        params_parse("selftest", raw)


def test_unknown_kind_is_refused():
    with pytest.raises(JobParamsError, match="unknown job kind 'mine_bitcoin'"):
        params_parse("mine_bitcoin", {})


def test_parameters_get_defaults_and_whole_floats_become_ints():
    params = params_parse("selftest", {"steps": 5.0})
    assert (params.steps, params.interval_seconds, params.fail_at_step) == (5, 0.5, 0)


@pytest.mark.django_db
def test_events_store_nan_and_infinity_as_null(make_user):
    job = make_job(make_user("ada"))
    event = job_event_record(job_id=job.pk, kind="metric", payload={"loss": float("nan"), "grad": [float("inf"), 1.0]})
    event.refresh_from_db()
    assert event.payload == {"loss": None, "grad": [None, 1.0]}


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_unique_gap_free_seq(make_user):
    job = make_job(make_user("ada"))
    errors = []

    def write(writer: int):
        try:
            for step in range(10):
                job_event_record(job_id=job.pk, kind="metric", payload={"writer": writer, "step": step})
        except Exception as exc:  # surfaced below: a lost event would be the bug
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    seqs = list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, 61))
    job.refresh_from_db()
    assert job.last_event_seq == 60


@pytest.mark.django_db
def test_start_refuses_a_task_id_that_is_not_the_jobs(make_user):
    job = make_job(make_user("ada"))
    assert job_start(job_id=job.pk, celery_task_id="someone-elses-task") is None
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.QUEUED, 0)


def heartbeat_stops(job: Job) -> None:
    """What a dead worker leaves: its job's last heartbeat ages (here: an hour ago)."""
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))


@pytest.mark.django_db
def test_a_second_delivery_while_the_first_attempt_beats_does_not_start_a_second_attempt(make_user, settings):
    settings.KSG_HEARTBEAT_SECONDS = 30
    job = make_job(make_user("ada"))
    assert job_start(job_id=job.pk, celery_task_id="task-1").attempts == 1
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=60))  # beat 60 s ago: alive
    assert job_start(job_id=job.pk, celery_task_id="task-1") is None
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.RUNNING, 1)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=91))  # 3 beats missed: gone
    assert job_start(job_id=job.pk, celery_task_id="task-1").attempts == 2


@pytest.mark.django_db
def test_start_counts_attempts_and_gives_up_at_the_limit(make_user, settings):
    settings.KSG_MAX_ATTEMPTS = 2
    job = make_job(make_user("ada"))
    assert job_start(job_id=job.pk, celery_task_id="task-1").attempts == 1
    heartbeat_stops(job)
    assert job_start(job_id=job.pk, celery_task_id="task-1").attempts == 2  # the worker died; redelivered
    heartbeat_stops(job)
    assert job_start(job_id=job.pk, celery_task_id="task-1") is None
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "gave up after 2 attempts" in job.error


@pytest.mark.django_db
def test_cancel_of_a_queued_job_is_immediate_and_final(make_user):
    user = make_user("ada")
    job = make_job(user)
    job_cancel(job=job, actor=user)
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job_start(job_id=job.pk, celery_task_id="task-1") is None
    with pytest.raises(JobStateError, match="already cancelled"):
        job_cancel(job=job, actor=user)


@pytest.mark.django_db
def test_cancel_of_a_running_job_only_raises_the_flag(make_user):
    user = make_user("ada")
    job = make_job(user)
    job_start(job_id=job.pk, celery_task_id="task-1")
    job_cancel(job=job, actor=user)
    job.refresh_from_db()
    assert (job.status, job.cancel_requested) == (Job.Status.RUNNING, True)


@pytest.mark.django_db
def test_artifact_outside_the_artifact_directory_is_refused(make_user, tmp_path):
    job = make_job(make_user("ada"))
    outside = tmp_path / "secrets.txt"
    outside.write_text("x")
    with pytest.raises(ValueError, match="outside both artifact areas"):
        artifact_record(job_id=job.pk, kind="report", path=outside)


@pytest.mark.django_db
def test_directory_artifact_checksum_covers_names_and_contents(make_user, settings):
    job = make_job(make_user("ada"))
    adapter = settings.KSG_ARTIFACT_DIR / f"test-job-{job.pk}" / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "a.json").write_text("{}")
    (adapter / "b.bin").write_bytes(b"\x00" * 10)
    first = artifact_record(job_id=job.pk, kind="adapter", path=adapter)
    (adapter / "b.bin").write_bytes(b"\x01" * 10)
    second = artifact_record(job_id=job.pk, kind="adapter", path=adapter)
    assert first.pk == second.pk and first.bytes == 12
    assert first.sha256 != second.sha256


@pytest.mark.django_db
def test_a_budget_spending_job_without_a_dataset_is_refused(make_user):
    from jobs.services import job_submit

    with pytest.raises(JobParamsError, match="needs a dataset"):
        job_submit(owner=make_user("ada"), kind="dp_finetune", params={})
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_model_fit_to_the_records_without_dp_is_never_exported(make_user):
    """The nonprivate and scrubbed baselines' adapters live in the client-only area: the export
    (a server-side job) is refused for them, before anything is queued."""
    from jobs.models import Artifact
    from ksg_web.runs.pipeline import run_export
    from jobs.services import JobStateError
    from tests.privacy.factories import make_dataset

    owner = make_user("ada")
    dataset = make_dataset(owner)
    run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="succeeded", params={"baseline": "nonprivate"})
    stage = Job.objects.create(kind="finetune_private", owner=owner, dataset=dataset, parent=run, status="succeeded")
    adapter = Artifact.objects.create(job=stage, kind="adapter", path=f"job-{stage.pk}/private_adapter",
                                      area=Artifact.Area.CLIENT, sha256="0" * 64, bytes=1)
    Job.objects.create(kind="evaluate", owner=owner, dataset=dataset, parent=run, status="succeeded",
                       params={"adapter_artifact": adapter.pk})

    with pytest.raises(JobStateError, match="trained on the private records without DP"):
        run_export(run=run, actor=owner)
    assert not Job.objects.filter(kind="export").exists()
