"""Jobs, their event stream and the files they produce. Writes go through jobs.services."""
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from .kinds import JobParamsError, job_kind_label, job_kind_spec


def job_kind_validate(kind: str) -> None:
    try:
        job_kind_spec(kind)
    except JobParamsError as error:
        raise ValidationError(str(error)) from None


class Job(models.Model):
    """One Celery-run unit of work: a pipeline stage, a baseline, or the selftest."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        # a run over its dataset's approval threshold, before a compliance officer decides
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"

    TERMINAL_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    # a kind registered by an app (jobs.kinds): a new kind needs no migration
    kind = models.CharField(max_length=32, validators=[job_kind_validate])
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.QUEUED, db_index=True)
    params = models.JSONField(default=dict, help_text="Validated parameters of the job's kind.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    dataset = models.ForeignKey(
        "privacy.PrivateDataset", on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
    )
    parent = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="children")
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life from the worker.")
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times a worker has started this job.")
    cancel_requested = models.BooleanField(default=False)
    last_event_seq = models.PositiveIntegerField(default=0, help_text="seq of the newest JobEvent.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind_label} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.TERMINAL_STATUSES

    @property
    def kind_label(self) -> str:
        return job_kind_label(self.kind)


class JobEvent(models.Model):
    """One entry of a job's stream. `seq` runs 1, 2, 3, ... per job with no gaps."""

    class Kind(models.TextChoices):
        STATUS = "status", "Status"
        METRIC = "metric", "Metric"
        EPSILON = "epsilon", "Epsilon"
        SAMPLE = "sample", "Sample"
        LOG = "log", "Log"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="jobevent_unique_seq_per_job")]

    def __str__(self) -> str:
        return f"job {self.job_id} #{self.seq} {self.kind}"

    def as_message(self) -> dict:
        """The JSON form sent to websocket clients and returned by the events endpoint."""
        return {
            "job": self.job_id,
            "seq": self.seq,
            "kind": self.kind,
            "payload": self.payload,
            "time": self.created_at.isoformat(),
        }


class Artifact(models.Model):
    """A file a job produced, with its checksum, in one of two areas (jobs.artifacts): the
    server-readable artifact directory (KSG_ARTIFACT_DIR: aggregates and DP outputs) or the
    client-only area under KSG_PRIVATE_DIR (anything that quotes or was fit without DP to private
    records)."""

    class Area(models.TextChoices):
        SERVER = "server", "server-readable (KSG_ARTIFACT_DIR)"
        CLIENT = "client", "client side only (KSG_PRIVATE_DIR/artifacts)"

    class Kind(models.TextChoices):
        ADAPTER = "adapter", "LoRA adapter"
        SYNTHETIC_DATA = "synthetic_data", "Synthetic data"
        MODEL = "model", "Model"
        REPORT = "report", "Report"

    job = models.ForeignKey(Job, on_delete=models.PROTECT, related_name="artifacts")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    path = models.CharField(max_length=500, help_text="Relative to the root of its area.")
    area = models.CharField(max_length=10, choices=Area.choices, default=Area.SERVER)
    sha256 = models.CharField(max_length=64)
    bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "kind", "path"]
        constraints = [models.UniqueConstraint(fields=["job", "kind", "path"], name="artifact_unique_per_job")]

    def __str__(self) -> str:
        return f"{self.kind} of job {self.job_id}: {self.path}"


class ApiToken(models.Model):
    """A bearer key for the JSON API (`Authorization: Bearer <key>`). Only the key's sha256 is
    stored; the key itself is shown once, when the token is created (jobs.tokens)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'analysis notebook'.")
    prefix = models.CharField(max_length=8, unique=True, help_text="The key's first 8 characters, to recognise it.")
    key_sha256 = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"API token {self.prefix}… of {self.user} ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
