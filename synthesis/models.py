"""Serving a run's model: deployments, the API keys that may call them, and the audit of every
request (synthesis/serving/ serves them at /v1/, OpenAI-compatible)."""
from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models


class Deployment(models.Model):
    """A run's evaluated model (its adapter on its base model) reachable at /v1/ under `name`."""

    class OutputFilter(models.TextChoices):
        MASK = "mask", "Mask personal data in outputs ([NAME], [EMAIL], ...)"
        REFUSE = "refuse", "Refuse an output that contains personal data"

    name = models.SlugField(max_length=100, unique=True, help_text="The model id clients send (`model`).")
    run = models.ForeignKey("jobs.Job", on_delete=models.PROTECT, related_name="deployments")
    adapter_artifact = models.ForeignKey("jobs.Artifact", on_delete=models.PROTECT, related_name="deployments")
    base_model = models.CharField(max_length=1000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deployments")
    created_at = models.DateTimeField(auto_now_add=True)
    active = models.BooleanField(default=True)
    output_filter = models.CharField(max_length=8, choices=OutputFilter.choices, default=OutputFilter.MASK)
    store_texts = models.BooleanField(default=False, help_text="Keep prompts and outputs in the audit (opt-in).")
    requests_per_minute = models.PositiveIntegerField(default=60, validators=[MinValueValidator(1)],
                                                      help_text="Per API key.")

    def __str__(self) -> str:
        return f"{self.name} (run {self.run_id})"


class ServingKey(models.Model):
    """An API key for deployments: stored as its SHA-256 digest, shown once, revocable; it sees
    only the deployments it is granted."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The key's first characters, to recognise it.")
    key_sha256 = models.CharField(max_length=64, unique=True)
    deployments = models.ManyToManyField(Deployment, related_name="keys")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="serving_keys")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class CompletionAudit(models.Model):
    """One request to /v1/chat/completions, whatever its outcome."""

    key = models.ForeignKey(ServingKey, null=True, blank=True, on_delete=models.PROTECT, related_name="audits")
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.PROTECT, related_name="audits")
    model_name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status_code = models.PositiveSmallIntegerField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    stream = models.BooleanField(default=False)
    filtered = models.BooleanField(default=False, help_text="The output filter masked or refused personal data.")
    filtered_spans = models.JSONField(default=dict, blank=True, help_text="Spans masked, per kind.")
    error = models.TextField(blank=True)
    prompt = models.JSONField(null=True, blank=True, help_text="Only where the deployment keeps texts.")
    output = models.TextField(blank=True, help_text="Only where the deployment keeps texts (after the filter).")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model_name} {self.status_code} at {self.created_at:%Y-%m-%d %H:%M:%S}"
