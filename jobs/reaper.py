"""Jobs whose worker vanished: a heartbeat while a stage runs, and the reaper that settles a
running job whose heartbeat stopped.

Only jobs a worker executes (the kinds with a stage in jobs.kinds, each a Celery task) have a
heartbeat, and only they are reaped by it. A composite job (a run) has no worker: it is running
while one of its children is queued or running, and its kind's `child_finished` (for a run,
ksg_web.runs.pipeline.run_child_finished) moves it on when a child ends, a reaped child included.
The reaper checks a composite job by its children instead: one still running whose children have
all finished for longer than the timeout lost its settlement (the worker died between finishing
the child and advancing the parent), and the reaper advances it.

A worker killed with SIGKILL (or a machine that lost power) never marks its job. With
`acks_late` the broker hands the task to another worker eventually, but only after the
visibility timeout (hours, longer than the longest stage), and not at all if the message was
lost. The reaper does not wait: a running job with no heartbeat for KSG_HEARTBEAT_TIMEOUT
seconds is failed, its kind's settlement runs (stage 1 commits the epsilon of the steps that drew
noise and releases the rest), and its run ends with it. A late redelivery then finds the job
finished and does nothing (jobs.services.job_start).
"""
import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import services
from .kinds import job_kind_spec, job_kinds, job_kinds_executed
from .models import Job, JobEvent

logger = logging.getLogger(__name__)


class Heartbeat:
    """While the `with` block runs, a daemon thread stamps the job's heartbeat_at every
    KSG_HEARTBEAT_SECONDS, on its own database connection (closed when it stops)."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-job-{job_id}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=10)

    def _beat(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    Job.objects.filter(pk=self.job_id).update(heartbeat_at=timezone.now())
                except Exception:  # a database blip must not kill the stage; the next beat retries
                    logger.warning("heartbeat of job %s not written", self.job_id, exc_info=True)
                    close_old_connections()
                self._stop.wait(settings.KSG_HEARTBEAT_SECONDS)
        finally:
            connection.close()


def jobs_reap(*, timeout_seconds: float | None = None) -> list[int]:
    """Fail every running job a worker executes whose last heartbeat (or start, if none) is
    older than the timeout, settling what its kind needs; returns their ids. Then advance the
    runs whose stages all finished longer ago than the timeout without the run moving on. Safe
    to run from many places at once: each job is re-checked under its row lock."""
    timeout = settings.KSG_HEARTBEAT_TIMEOUT if timeout_seconds is None else timeout_seconds
    cutoff = timezone.now() - timedelta(seconds=timeout)
    stale = Job.objects.filter(status=Job.Status.RUNNING, kind__in=job_kinds_executed()).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
    reaped = []
    for job_id in stale.values_list("pk", flat=True):
        if _job_reap(job_id=job_id, cutoff=cutoff):
            reaped.append(job_id)
    _runs_resettle(cutoff=cutoff)
    return reaped


def _runs_resettle(*, cutoff) -> None:
    """A running run with no stage left queued or running, whose newest stage finished before
    `cutoff`: the worker that finished the stage died before advancing the run. Advance it now
    (run_child_finished is idempotent: a run that moved on in the meantime is left as it is)."""
    composite = [kind for kind, spec in job_kinds().items() if spec.child_finished]
    active = Job.objects.exclude(status__in=Job.TERMINAL_STATUSES)
    runs = (Job.objects.filter(kind__in=composite, status=Job.Status.RUNNING)
            .exclude(children__in=active).filter(children__isnull=False).distinct())
    for run in runs:
        newest = run.children.order_by("-pk").first()
        if newest.finished_at is not None and newest.finished_at < cutoff:
            logger.warning("run %s was left running after its stage %s (job %s) ended; advancing it",
                           run.pk, newest.kind, newest.pk)
            services.job_parent_notify(job=newest)


def _job_reap(*, job_id: int, cutoff) -> bool:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        last_sign = job.heartbeat_at or job.started_at
        if job.status != Job.Status.RUNNING or last_sign is None or last_sign >= cutoff:
            return False  # it finished or beat again since the query
        settle_lost = job_kind_spec(job.kind).function("settle_lost")
        if settle_lost is not None:  # e.g. stage 1 commits the epsilon of the steps that drew noise
            settle_lost(job=job)
        error = (f"worker lost: no heartbeat since {last_sign:%Y-%m-%d %H:%M:%S} UTC "
                 f"(attempt {job.attempts}); the reaper stopped the job")
        services.job_event_record(job_id=job.pk, kind=JobEvent.Kind.LOG, payload={"message": error})
        services.job_finish_locked(job, Job.Status.FAILED, error=error)
    logger.warning("reaped job %s (%s): %s", job.pk, job.kind, error)
    if job.parent_id is not None:
        services.job_parent_notify(job=job)
    return True


def reaper_start(*, every_seconds: float) -> threading.Event:
    """Run jobs_reap every `every_seconds` on a daemon thread (the embedded server's reaper);
    set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_seconds):
            try:
                jobs_reap()
            except Exception:
                logger.exception("the reaper failed; trying again in %s s", every_seconds)
            finally:
                close_old_connections()

    threading.Thread(target=loop, name="job-reaper", daemon=True).start()
    return stop
