"""Writes to jobs, their events and artifacts. Every state change records its event in the same
transaction, and the live notification goes out only after that transaction commits."""
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .artifacts import artifact_area_of, artifact_checksum
from .db_retry import db_retried
from .events import event_publish
from .json_safe import json_safe
from .kinds import JobParamsError, job_kind_spec, params_as_dict, params_parse
from .models import Artifact, Job, JobEvent

logger = logging.getLogger(__name__)


class JobStateError(Exception):
    """An action that the job's current state does not allow; the message says why."""


class JobQueueUnavailable(Exception):
    """The task queue (the Celery broker) did not take the job."""


def job_submit(*, owner, kind: str, params: dict[str, Any] | None = None, dataset=None, parent=None) -> Job:
    """Validate parameters, create a queued job and hand it to the Celery queue of its kind.

    Raises JobParamsError for parameters that cannot run, JobQueueUnavailable when the broker
    refuses the task (the job is then marked failed with that reason, nothing is left queued).
    """
    spec = job_kind_spec(kind)
    parsed = params_parse(kind, params)
    if spec.spends_budget and dataset is None:
        raise JobParamsError(f"a {kind} job needs a dataset: it trains on private data under its budget")
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind, params=params_as_dict(parsed), owner=owner, dataset=dataset, parent=parent,
            celery_task_id=str(uuid.uuid4()),
        )
        job_event_record(job_id=job.pk, kind=JobEvent.Kind.STATUS, payload={"status": job.status})
        # Enqueue only once the job row is committed, or a fast worker would not find it.
        transaction.on_commit(lambda: _job_enqueue(job, f"jobs.{kind}", spec.queue))
    job.refresh_from_db()
    return job


def _job_enqueue(job: Job, task_name: str, queue: str) -> None:
    try:
        current_app.send_task(
            task_name, args=[job.pk], queue=queue, task_id=job.celery_task_id,
            # a broker restart takes a second or two: keep trying for about 10 s before failing the job
            retry=True, retry_policy={"max_retries": 5, "interval_start": 0.5, "interval_step": 1, "interval_max": 3},
        )
    except Exception as exc:  # kombu raises many kinds; each means the same thing here
        job_fail(job_id=job.pk, error=f"could not enqueue the job: {exc}. Is the broker (Redis) running?")
        if job.parent_id is not None:  # the run this stage belongs to ends with it
            job_parent_notify(job=job)
        raise JobQueueUnavailable(f"The task queue did not accept job {job.pk}: {exc}") from exc


def job_parent_notify(*, job: Job) -> None:
    """Tell a finished child's parent (a composite job, e.g. a run) that it ended: its kind's
    `child_finished` advances, fails or cancels it. Idempotent, like every child_finished."""
    parent_kind = Job.objects.filter(pk=job.parent_id).values_list("kind", flat=True).first()
    child_finished = job_kind_spec(parent_kind).function("child_finished") if parent_kind else None
    if child_finished is not None:
        child_finished(child_id=job.pk)


@db_retried
@transaction.atomic
def job_event_record(*, job_id: int, kind: str, payload: dict[str, Any]) -> JobEvent:
    """Append an event to a job's stream with the next `seq`, and publish it after commit.

    The counter on the job row is incremented in the same transaction as the insert: the row lock
    (PostgreSQL) or the write lock (SQLite) makes `seq` gap-free and ordered per job.
    """
    now = timezone.now()
    if not Job.objects.filter(pk=job_id).update(last_event_seq=F("last_event_seq") + 1, heartbeat_at=now):
        raise Job.DoesNotExist(f"job {job_id} does not exist")
    seq, dataset_id = Job.objects.filter(pk=job_id).values_list("last_event_seq", "dataset_id").get()
    event = JobEvent.objects.create(job_id=job_id, seq=seq, kind=kind, payload=json_safe(payload))
    message = event.as_message()
    transaction.on_commit(lambda: event_publish(message, dataset_id=dataset_id))
    return event


@db_retried
@transaction.atomic
def job_start(*, job_id: int, celery_task_id: str) -> Job | None:
    """Mark a job running for a new attempt; None when it must not run (not this job's task,
    finished, cancelled, or out of attempts). A redelivered task of a finished job is a no-op."""
    job = Job.objects.select_for_update().get(pk=job_id)
    if job.celery_task_id != celery_task_id:
        # A stale message (another database, an old queue) naming a job id that is not its own.
        logger.warning("task %s is not job %s's task %s; ignoring it", celery_task_id, job_id, job.celery_task_id)
        return None
    if job.is_finished:
        logger.info("job %s is already %s; task %s does nothing", job_id, job.status, celery_task_id)
        return None
    if job_heartbeat_live(job):
        # A second delivery of the task (restored after a broker reconnect) while the first
        # attempt still runs on another worker: two attempts at once would spend epsilon twice.
        logger.info("job %s is running on a live worker (heartbeat %s); task %s does nothing",
                    job_id, job.heartbeat_at, celery_task_id)
        return None
    if job.cancel_requested:
        job_finish_locked(job, Job.Status.CANCELLED, error="cancelled before it started")
        return None
    if job.attempts >= settings.KSG_MAX_ATTEMPTS:
        job_finish_locked(
            job, Job.Status.FAILED,
            error=f"gave up after {job.attempts} attempts: the worker stopped before finishing each time",
        )
        return None
    job.attempts += 1
    job.status = Job.Status.RUNNING
    job.started_at = timezone.now()
    job.save(update_fields=["attempts", "status", "started_at"])
    job_event_record(
        job_id=job.pk, kind=JobEvent.Kind.STATUS, payload={"status": job.status, "attempt": job.attempts}
    )
    return job


def job_heartbeat_live(job: Job) -> bool:
    """Whether a running job's worker beat within the last three heartbeat periods
    (KSG_HEARTBEAT_SECONDS): a worker is on it now. A worker that stopped beating longer ago is
    taken as gone: a new attempt may start (and the reaper will settle it after KSG_HEARTBEAT_TIMEOUT)."""
    if job.status != Job.Status.RUNNING or job.heartbeat_at is None:
        return False
    return timezone.now() - job.heartbeat_at < timedelta(seconds=3 * settings.KSG_HEARTBEAT_SECONDS)


@db_retried
@transaction.atomic
def job_succeed(*, job_id: int) -> Job:
    job = Job.objects.select_for_update().get(pk=job_id)
    return job_finish_locked(job, Job.Status.SUCCEEDED)


@db_retried
@transaction.atomic
def job_fail(*, job_id: int, error: str) -> Job:
    job = Job.objects.select_for_update().get(pk=job_id)
    return job_finish_locked(job, Job.Status.FAILED, error=error)


@db_retried
@transaction.atomic
def job_mark_cancelled(*, job_id: int) -> Job:
    """The worker stopped a running job because a cancel was requested."""
    job = Job.objects.select_for_update().get(pk=job_id)
    return job_finish_locked(job, Job.Status.CANCELLED, error="cancelled on request")


def job_cancel(*, job: Job, actor) -> Job:
    """Cancel a queued job at once, or ask a running one to stop at its next step."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            raise JobStateError(f"job {job.pk} is already {job.status}; there is nothing to cancel")
        job.cancel_requested = True
        job.save(update_fields=["cancel_requested"])
        if job.status == Job.Status.QUEUED:
            job_finish_locked(job, Job.Status.CANCELLED, error=f"cancelled by {actor} before it started")
        else:
            job_event_record(
                job_id=job.pk, kind=JobEvent.Kind.LOG,
                payload={"message": f"cancel requested by {actor}; stopping at the next step"},
            )
    if job.status == Job.Status.CANCELLED:
        try:  # only spares the worker a no-op: job_start already refuses a cancelled job
            current_app.control.revoke(job.celery_task_id)
        except Exception:
            logger.warning("could not revoke task %s of cancelled job %s", job.celery_task_id, job.pk, exc_info=True)
    return job


@db_retried
def job_run_state(*, job_id: int) -> tuple[str, bool, str]:
    """(status, cancel requested, error) of a job, read fresh: what a stage checks between steps."""
    return Job.objects.filter(pk=job_id).values_list("status", "cancel_requested", "error").get()


def job_finish_locked(job: Job, status: str, *, error: str = "") -> Job:
    """Move a job (locked by the caller with select_for_update) to a final status, with its event."""
    if job.is_finished:
        return job
    job.status = status
    job.error = error
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error", "finished_at"])
    payload = {"status": status}
    if error:
        payload["error"] = error
    job_event_record(job_id=job.pk, kind=JobEvent.Kind.STATUS, payload=payload)
    return job


@db_retried
def artifact_record(*, job_id: int, kind: str, path: Path) -> Artifact:
    """Register a file (or a directory, hashed file by file in name order) a job wrote in one of
    the artifact areas (jobs.artifacts: KSG_ARTIFACT_DIR, or the client-only area under
    KSG_PRIVATE_DIR); the area follows from where it lies. Recording the same path again updates
    its checksum: stages may re-run."""
    area, root = artifact_area_of(path)
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"artifact {path} does not exist")
    sha256, size = artifact_checksum(path)
    artifact, _ = Artifact.objects.update_or_create(
        job_id=job_id, kind=kind, path=str(path.relative_to(root)),
        defaults={"sha256": sha256, "bytes": size, "area": area},
    )
    return artifact


