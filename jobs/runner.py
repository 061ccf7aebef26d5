"""What a worker does with a job: start it, give the stage a context to report through, settle it.

A stage is a plain function `stage(params, ctx)`; it reports through `ctx` and calls
`ctx.check()` between steps, which raises when the job was cancelled, ended elsewhere (reaped) or
ran past its time limit.
"""
import logging
import time
from pathlib import Path
from typing import Any, Callable

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from . import services
from .artifacts import artifact_root
from .kinds import SERVER_QUEUE, JobKindSpec, job_kind_spec
from .models import Artifact, Job, JobEvent
from .reaper import Heartbeat

logger = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a stage when a cancel was requested."""


class JobEnded(Exception):
    """Raised inside a stage whose job was ended elsewhere while its worker still ran it (the
    reaper took its worker for lost): the stage stops at its next step instead of going on."""


class StageTimeLimitExceeded(Exception):
    """Raised inside a stage when it ran past KSG_STAGE_TIME_LIMITS (also where Celery's own
    limits are not enforced: the solo pool of the embedded worker)."""


class PrivacyBoundaryError(Exception):
    """A server-side stage was handed a reference to private data; it refuses to run."""


PRIVATE_PARAM_NAMES = {"dataset", "dataset_id", "dataset_path", "private_path", "records"}


def server_boundary_check(job: Job) -> None:
    """Server-side stages receive artifact ids, never a private dataset: refuse a job whose
    parameters name one, point into KSG_PRIVATE_DIR, or name a client-only artifact (jobs.artifacts:
    it quotes private records or was fit to them without DP) (the parameters were tampered with,
    or a caller bypassed the submit services)."""
    private_root = Path(settings.KSG_PRIVATE_DIR).resolve()
    for name, value in job.params.items():
        if name in PRIVATE_PARAM_NAMES:
            raise PrivacyBoundaryError(f"server stage {job.kind} refuses parameter {name!r}: it names private data")
        if name.endswith("_artifact") and isinstance(value, int) and not isinstance(value, bool) and \
                Artifact.objects.filter(pk=value, area=Artifact.Area.CLIENT).exists():
            raise PrivacyBoundaryError(f"server stage {job.kind} refuses parameter {name!r}: artifact {value} is "
                                       "client-only (it stays on the private side of the boundary)")
        if isinstance(value, str) and ("/" in value or "\\" in value):
            if Path(value).expanduser().resolve().is_relative_to(private_root):
                raise PrivacyBoundaryError(
                    f"server stage {job.kind} refuses parameter {name!r}: {value} is inside the private data directory"
                )


def stage_time_limit(spec: JobKindSpec) -> int:
    """A kind's time limit in seconds: its spec's, or KSG_STAGE_TIME_LIMITS's override."""
    return int(settings.KSG_STAGE_TIME_LIMITS.get(spec.kind, spec.time_limit))


class JobContext:
    """The stage's window on its job: events, artifacts, cancel and time checks."""

    def __init__(self, *, job: Job):
        self.job = job
        self.job_id = job.pk
        self.attempt = job.attempts
        kind = job.kind
        self.time_limit_seconds = stage_time_limit(job_kind_spec(kind))
        self.deadline = time.monotonic() + self.time_limit_seconds
        self.artifact_dir = Path(settings.KSG_ARTIFACT_DIR) / f"job-{job.pk}"
        self._last_sample = 0.0

    def metric(self, **values: Any) -> None:
        services.job_event_record(job_id=self.job_id, kind=JobEvent.Kind.METRIC, payload=values)

    def epsilon(self, **values: Any) -> None:
        services.job_event_record(job_id=self.job_id, kind=JobEvent.Kind.EPSILON, payload=values)

    def sample(self, **values: Any) -> bool:
        """Record a sample (a generated instruction, a verdict, a pair) unless one was recorded less
        than KSG_SAMPLE_EVENT_SECONDS ago: the live feed stays readable. True if recorded."""
        now = time.monotonic()
        if now - self._last_sample < settings.KSG_SAMPLE_EVENT_SECONDS:
            return False
        self._last_sample = now
        services.job_event_record(job_id=self.job_id, kind=JobEvent.Kind.SAMPLE, payload=values)
        return True

    def log(self, message: str, **values: Any) -> None:
        services.job_event_record(job_id=self.job_id, kind=JobEvent.Kind.LOG, payload={"message": message, **values})

    def check(self) -> None:
        """Between steps: stop if the job was ended elsewhere, a cancel was asked, or time is up."""
        if self.ensure_running():
            raise JobCancelled()
        if time.monotonic() > self.deadline:
            raise StageTimeLimitExceeded()

    def ensure_running(self) -> bool:
        """Raise JobEnded when the job is no longer running (the reaper failed it); otherwise
        whether a cancel was asked. A DP stage calls it after recording a step's epsilon and before
        drawing that step's noise, so a step the reaper did not count is never taken."""
        status, cancel_requested, error = services.job_run_state(job_id=self.job_id)
        if status != Job.Status.RUNNING:
            raise JobEnded(f"job {self.job_id} was ended ({status}: {error}) while this worker still ran it")
        return cancel_requested

    def wait(self, seconds: float) -> None:
        """Sleep, checking for a cancel at least every half second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.5))
            self.check()

    @property
    def client_artifact_dir(self) -> Path:
        """The job's folder in the client-only artifact area (KSG_PRIVATE_DIR/artifacts/job-<id>):
        where a client-side stage writes what quotes private records. A server-side stage asking
        for it is refused: nothing it writes may land on the private side, nor read from it."""
        if job_kind_spec(self.job.kind).queue == SERVER_QUEUE:
            raise PrivacyBoundaryError(f"server stage {self.job.kind} has no client-only artifact area")
        return artifact_root("client") / f"job-{self.job_id}"

    def artifact(self, *, kind: str, path: Path) -> Artifact:
        """Register a file the stage wrote, in the area it lies in (self.artifact_dir: server-readable;
        self.client_artifact_dir: client only)."""
        return services.artifact_record(job_id=self.job_id, kind=kind, path=path)


def job_execute(*, job_id: int, celery_task_id: str, stage: Callable[[Any, JobContext], None]) -> str:
    """Run one attempt of a job's stage and settle the job; returns the job's final status."""
    try:
        job = services.job_start(job_id=job_id, celery_task_id=celery_task_id)
    except Job.DoesNotExist:
        logger.warning("task %s names job %s, which does not exist; dropping it", celery_task_id, job_id)
        return "missing"
    if job is None:
        # Not run (finished, cancelled, or out of attempts): its run may still need settling.
        _settle_parent(Job.objects.get(pk=job_id))
        return "skipped"
    status = _run_stage(job, stage)
    _settle_parent(job)
    return status


def _settle_parent(job: Job) -> None:
    """Advance, fail or cancel the run a finished stage belongs to (idempotent)."""
    if job.parent_id is not None and Job.objects.filter(pk=job.pk, status__in=Job.TERMINAL_STATUSES).exists():
        services.job_parent_notify(job=job)


def _run_stage(job: Job, stage: Callable[[Any, JobContext], None]) -> str:
    try:
        spec = job_kind_spec(job.kind)
        if spec.queue == SERVER_QUEUE:
            server_boundary_check(job)
        params = spec.params_class(**job.params)
        ctx = JobContext(job=job)
        with Heartbeat(job.pk):  # the reaper (jobs/reaper.py) takes a job without one as lost
            stage(params, ctx)
    except JobCancelled:
        return services.job_mark_cancelled(job_id=job.pk).status
    except JobEnded as ended:
        services.job_event_record(job_id=job.pk, kind=JobEvent.Kind.LOG,
                                  payload={"message": f"{ended}; the stage stopped at its next step"})
        return Job.objects.get(pk=job.pk).status
    except (StageTimeLimitExceeded, SoftTimeLimitExceeded):
        limit = stage_time_limit(job_kind_spec(job.kind))
        error = f"stopped: the {job.kind} stage ran past its time limit of {limit} s"
        return services.job_fail(job_id=job.pk, error=error).status
    except Exception as exc:
        logger.exception("job %s (%s) failed", job.pk, job.kind)
        return services.job_fail(job_id=job.pk, error=f"{type(exc).__name__}: {exc}").status
    return services.job_succeed(job_id=job.pk).status
