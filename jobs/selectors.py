"""Reads of jobs and their streams, with who may see what."""
from django.db.models import QuerySet

from .models import Artifact, Job, JobEvent

BACKLOG_BATCH = 500


def jobs_visible_to(user) -> QuerySet[Job]:
    """Jobs a user may see: their own; staff see all."""
    if not user.is_authenticated:
        return Job.objects.none()
    jobs = Job.objects.select_related("owner", "dataset")
    return jobs if user.is_staff else jobs.filter(owner=user)


def job_visible_to(user, job_id: int) -> bool:
    return jobs_visible_to(user).filter(pk=job_id).exists()


def job_events_after(*, job_id: int, after_seq: int, limit: int = BACKLOG_BATCH) -> list[dict]:
    """Up to `limit` events with seq > after_seq, oldest first, as websocket messages."""
    events = JobEvent.objects.filter(job_id=job_id, seq__gt=after_seq).order_by("seq")[:limit]
    return [event.as_message() for event in events]


def artifacts_visible_to(user) -> QuerySet[Artifact]:
    return Artifact.objects.filter(job__in=jobs_visible_to(user))


def job_last_event_payload(*, job_id: int, kind: str) -> dict | None:
    """The payload of the job's newest event of `kind`, or None."""
    event = JobEvent.objects.filter(job_id=job_id, kind=kind).order_by("-seq").first()
    return None if event is None else event.payload
