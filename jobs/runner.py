"""What a worker does with a job: start it, give the stage a context to report through, settle it.

A stage is a plain function `stage(params, ctx)`; it reports through `ctx` and calls
`ctx.check()` between steps, which raises when the job was cancelled or ran past its time limit.
"""
import logging
import time
from pathlib import Path
from typing import Any, Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from . import services
from .kinds import job_kind_spec
from .models import Artifact, Job, JobEvent

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a stage when a cancel was requested."""


class StageTimeLimitExceeded(Exception):
    """Raised inside a stage when it ran past KSG_STAGE_TIME_LIMITS (also where Celery's own
    limits are not enforced: the solo pool of the embedded worker)."""


class JobContext:
    """The stage's window on its job: events, artifacts, cancel and time checks."""

    def __init__(self, *, job: Job):
        self.job = job
        self.job_id = job.pk
        self.attempt = job.attempts
        kind = job.kind
        self.time_limit_seconds = settings.KSG_STAGE_TIME_LIMITS[kind]
        self.deadline = time.monotonic() + self.time_limit_seconds
        self.artifact_dir = Path(settings.KSG_ARTIFACT_DIR) / f"job-{job.pk}"

    def metric(self, **values: Any) -> None:
        services.job_event_record(job_id=self.job_id, kind=JobEvent.Kind.METRIC, payload=values)

    def epsilon(self, **values: Any) -> None:
        services.job_event_record(job_id=self.job_id, kind=JobEvent.Kind.EPSILON, payload=values)

    def sample(self, **values: Any) -> None:
        services.job_event_record(job_id=self.job_id, kind=JobEvent.Kind.SAMPLE, payload=values)

    def log(self, message: str, **values: Any) -> None:
        services.job_event_record(job_id=self.job_id, kind=JobEvent.Kind.LOG, payload={"message": message, **values})

    def check(self) -> None:
        if services.job_cancel_requested(job_id=self.job_id):
            raise JobCancelled()
        if time.monotonic() > self.deadline:
            raise StageTimeLimitExceeded()

    def wait(self, seconds: float) -> None:
        """Sleep, checking for a cancel at least every half second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
            self.check()

    def artifact(self, *, kind: str, path: Path) -> Artifact:
        return services.artifact_record(job_id=self.job_id, kind=kind, path=path)


def job_execute(*, job_id: int, celery_task_id: str, stage: Callable[[Any, JobContext], None]) -> str:
    """Run one attempt of a job's stage and settle the job; returns the job's final status."""
    try:
        job = services.job_start(job_id=job_id, celery_task_id=celery_task_id)
    except Job.DoesNotExist:
        logger.warning("task %s names job %s, which does not exist; dropping it", celery_task_id, job_id)
        return "missing"
    if job is None:
        return "skipped"
    try:
        params = job_kind_spec(job.kind).params_class(**job.params)
        ctx = JobContext(job=job)
        stage(params, ctx)
    except JobCancelled:
        return services.job_mark_cancelled(job_id=job.pk).status
    except (StageTimeLimitExceeded, SoftTimeLimitExceeded):
        limit = settings.KSG_STAGE_TIME_LIMITS[job.kind]
        error = f"stopped: the {job.kind} stage ran past its time limit of {limit} s"
        return services.job_fail(job_id=job.pk, error=error).status
    except Exception as exc:
        logger.exception("job %s (%s) failed", job.pk, job.kind)
        return services.job_fail(job_id=job.pk, error=f"{type(exc).__name__}: {exc}").status
    return services.job_succeed(job_id=job.pk).status
