"""Reads of jobs and their streams, with who may see what."""
from pathlib import Path
from typing import Callable

from django.db.models import QuerySet

from .artifacts import artifact_checksum, artifact_file, artifact_root
from .models import Artifact, Job, JobEvent

BACKLOG_BATCH = 500


# Who may see which job is decided by the app that owns access control (privacy.access, which
# registers its policy at start-up): policy(user, jobs) -> the visible subset of `jobs`.
_visibility_policy: Callable[[object, QuerySet[Job]], QuerySet[Job]] | None = None


def job_visibility_register(policy: Callable[[object, QuerySet[Job]], QuerySet[Job]]) -> None:
    global _visibility_policy
    _visibility_policy = policy


def jobs_visible_to(user) -> QuerySet[Job]:
    """Jobs a user may see: the registered policy's answer (privacy.access: their own, those on
    datasets they may use, all for compliance officers); with no policy, only their own."""
    if not user.is_authenticated:
        return Job.objects.none()
    jobs = Job.objects.select_related("owner", "dataset")
    if _visibility_policy is None:
        return jobs.filter(owner=user)
    return _visibility_policy(user, jobs)


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


def artifact_location(artifact: Artifact) -> Path:
    """Where an artifact's file lies: its area's root (jobs.artifacts) joined with its path."""
    return artifact_root(artifact.area) / artifact.path


def artifact_existing_file(artifact: Artifact) -> Path | None:
    """The artifact's file or directory if it still exists inside its area's root, else None."""
    return artifact_file(artifact)


def run_artifacts(*, run_id: int, area: str) -> list[tuple[Artifact, Path]]:
    """The artifacts of a run's stages in one area ("server", "client") whose files still
    exist, with those files, oldest first."""
    artifacts = Artifact.objects.filter(job__parent_id=run_id, area=area).order_by("pk")
    return [(artifact, path) for artifact in artifacts if (path := artifact_file(artifact)) is not None]


def artifact_input(*, artifact_id: int, kind: str) -> Path:
    """The file or directory of an artifact a stage takes as input, after checking that it is
    of the expected kind, lies inside its area's root (jobs.artifacts) and still has its recorded
    sha256."""
    try:
        artifact = Artifact.objects.get(pk=artifact_id)
    except Artifact.DoesNotExist:
        raise ArtifactInputError(f"artifact {artifact_id} does not exist") from None
    if artifact.kind != kind:
        raise ArtifactInputError(f"artifact {artifact_id} is a {artifact.kind}, not a {kind}")
    path = artifact_file(artifact)
    if path is None:
        raise ArtifactInputError(f"artifact {artifact_id} ({artifact.path}) is missing from {artifact_root(artifact.area)}")
    if artifact_checksum(path)[0] != artifact.sha256:
        raise ArtifactInputError(f"artifact {artifact_id} ({artifact.path}) changed since it was recorded")
    return path


class ArtifactInputError(Exception):
    """An input artifact that is missing, of the wrong kind, or altered."""
