"""Private datasets, their privacy budgets and the append-only epsilon ledger.

Writes go through privacy.services; balances are derived from the ledger (privacy.selectors),
never stored, so there is nothing to drift.
"""
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

EPSILON_DECIMAL_PLACES = 6  # ledger precision; spent epsilon is rounded up to it, never down


class PrivateDataset(models.Model):
    """Private records under KSG_PRIVATE_DIR; they never leave the client side.

    The directory `path` holds `original.<jsonl|csv>` as uploaded, and the normalised splits
    `train.jsonl` and `heldout.jsonl` (records {"instruction", "response"}, with "unit" where the
    dataset names a privacy unit and "identity" {field: value} where it names identifying fields);
    held-out records are never used for training.
    """

    class SourceFormat(models.TextChoices):
        JSONL = "jsonl", "JSON Lines"
        CSV = "csv", "CSV"

    name = models.CharField(max_length=200, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets")
    path = models.CharField(max_length=500, help_text="Directory relative to KSG_PRIVATE_DIR.")
    source_format = models.CharField(max_length=8, choices=SourceFormat.choices)
    field_mapping = models.JSONField(
        default=dict, help_text='Source columns used, e.g. {"instruction": "question", "response": "answer"}.'
    )
    sha256 = models.CharField(max_length=64, help_text="Of the uploaded file, byte for byte.")
    size_bytes = models.PositiveBigIntegerField()
    record_count = models.PositiveIntegerField()
    train_count = models.PositiveIntegerField()
    heldout_count = models.PositiveIntegerField()
    split_seed = models.BigIntegerField()
    pii_summary = models.JSONField(default=dict, help_text="Counts of names, emails, phones, dates, ids found.")
    privacy_unit = models.CharField(
        max_length=100, blank=True, editable=False,
        help_text="The field naming the person each record belongs to (e.g. patient_id): DP protects each "
                  "person's records together. Empty: each record is its own unit. Fixed at registration.")
    identifying_fields = models.JSONField(
        default=list, blank=True, editable=False,
        help_text="The fields (columns) naming the person a record is about, e.g. [\"patient_name\", \"email\"]: "
                  "their values stay with each record, client side, as the targets and candidates of the "
                  "evaluation's name-reconstruction attack. Empty: that attack relies on the PII detector alone. "
                  "Fixed at registration.")
    train_units = models.PositiveIntegerField(
        default=0, help_text="Privacy units in the training split (canaries are one each; records, with no unit field).")
    duplicate_records = models.PositiveIntegerField(
        default=0, help_text="Exact duplicates found at registration (same unit, instruction and response).")
    duplicates_dropped = models.BooleanField(default=False, help_text="Whether those duplicates were left out.")
    canary_count = models.PositiveIntegerField(
        default=0, help_text="Random canary records planted in the training split at registration (0: none)."
    )
    canary_repeats = models.PositiveIntegerField(default=0, help_text="Copies of each canary in the training split.")
    audit_canary_count = models.PositiveIntegerField(
        default=0, help_text="Audit canaries drawn at registration for the one-run privacy audit (about half went "
                             "into the training split, by coin flip; 0: the dataset's runs are not audited).")
    allow_nonprivate_baselines = models.BooleanField(
        default=False,
        help_text="Whether non-private baselines (plain fine-tuning on the raw records, no DP guarantee) may run.",
    )
    approval_epsilon_threshold = models.DecimalField(
        max_digits=12, decimal_places=EPSILON_DECIMAL_PLACES, null=True, blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Runs whose stage-1 target epsilon is above this wait for a compliance officer's approval "
                  "(empty: never). Change it through privacy.services.approval_threshold_change (audited).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def epsilon_unit(self) -> str:
        """What one epsilon of this dataset protects, as every page and file states it:
        "per record", or "per <unit field>" (e.g. "per patient_id")."""
        return f"per {self.privacy_unit}" if self.privacy_unit else "per record"


class PrivacyBudget(models.Model):
    """The epsilon a dataset may spend in total across its DP jobs, and the delta each DP job on
    it is run at. `composition` says how the jobs' spends add up against the limit: their sum
    (sequential), or the whole DP history accounted at once at `delta` (tight)."""

    class Composition(models.TextChoices):
        SEQUENTIAL = "sequential", "Sequential (the sum of the jobs' epsilons)"
        TIGHT = "tight", "Tight (every job's mechanism composed by the accountant)"

    class Accountant(models.TextChoices):
        # Only accountants whose epsilon is an upper bound. GDP (the CLT approximation) is left
        # out: it under-counts by ~12% at q=0.01, sigma=1, T=1000, and the ledger must not.
        PRV = "prv", "PRV (privacy random variables)"
        RDP = "rdp", "RDP (Renyi differential privacy)"

    dataset = models.OneToOneField(PrivateDataset, on_delete=models.PROTECT, related_name="budget")
    epsilon_limit = models.DecimalField(
        max_digits=12, decimal_places=EPSILON_DECIMAL_PLACES, validators=[MinValueValidator(Decimal("0.000001"))]
    )
    delta = models.FloatField(
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A probability; below 1/n for n records.",
    )
    accountant = models.CharField(max_length=8, choices=Accountant.choices, default=Accountant.PRV)
    composition = models.CharField(
        max_length=16, choices=Composition.choices, default=Composition.SEQUENTIAL,
        help_text="Chosen by a compliance officer through privacy.services.budget_composition_change (audited).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(epsilon_limit__gt=0), name="budget_epsilon_limit_positive"),
            models.CheckConstraint(
                condition=models.Q(delta__gte=0) & models.Q(delta__lt=1), name="budget_delta_is_probability"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset}: epsilon <= {self.epsilon_limit}, delta = {self.delta:g}"


class LedgerEntry(models.Model):
    """One append-only row of a budget's history. A trigger refuses UPDATE (and DELETE on
    PostgreSQL) of these rows; at most one row of each kind per job.

    reserve: before a DP job starts, its target epsilon is set aside (under a tight budget,
             with the job's planned mechanism in mechanism["plan"] and the composed increase);
    commit:  the epsilon the accountant says the job spent (rounded up), with the mechanism;
    The epsilon column is always the job's own epsilon (the sequential accounting); the composed
    figure is recomputed from the mechanisms (privacy.selectors.budget_balance).
    release: what was reserved and not spent goes back.
    nonprivate: a non-private release (a baseline trained on the raw records with no DP at all);
                its epsilon column is 0 because no finite epsilon describes it, and it is
                never counted as spent: budget_balance reports these releases separately.
    """

    class Kind(models.TextChoices):
        RESERVE = "reserve", "Reserve"
        COMMIT = "commit", "Commit"
        RELEASE = "release", "Release"
        NONPRIVATE = "nonprivate", "Non-private release"

    budget = models.ForeignKey(PrivacyBudget, on_delete=models.PROTECT, related_name="ledger")
    job = models.ForeignKey("jobs.Job", on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries",
        help_text="Who caused the entry: the job's owner, or the operator who settled it.",
    )
    epsilon = models.DecimalField(max_digits=12, decimal_places=EPSILON_DECIMAL_PLACES)
    delta = models.FloatField()
    reason = models.TextField()
    mechanism = models.JSONField(
        default=dict, blank=True,
        help_text="For commits: sample_rate, noise_multiplier, steps, accountant, library versions; for tight reserves: the plan.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["job", "kind"], name="ledger_one_entry_per_job_and_kind"),
            models.CheckConstraint(condition=models.Q(epsilon__gte=0), name="ledger_epsilon_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.epsilon} for job {self.job_id} on {self.budget.dataset}"


class DatasetGrant(models.Model):
    """Lets a user, or every member of a group, use a dataset: submit runs on it and see its runs.
    `can_read_records` additionally lets them read the raw private records (compliance officers
    see budgets and ledgers of every dataset, but records only through such a grant)."""

    dataset = models.ForeignKey(PrivateDataset, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="dataset_grants")
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="dataset_grants")
    can_read_records = models.BooleanField(default=False)
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(user__isnull=False, group__isnull=True) | models.Q(user__isnull=True, group__isnull=False)),
                name="grant_names_a_user_or_a_group",
            ),
            models.UniqueConstraint(fields=["dataset", "user"], name="grant_once_per_user"),
            models.UniqueConstraint(fields=["dataset", "group"], name="grant_once_per_group"),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.group} may use {self.dataset}"


class AuditEntry(models.Model):
    """One append-only row of the audit trail beside the ledger: decisions and configuration
    changes (budget limits, grants, run approvals). Triggers refuse UPDATE (both databases) and
    DELETE (PostgreSQL), as for the ledger."""

    class Action(models.TextChoices):
        DATASET_REGISTERED = "dataset_registered", "Dataset registered"
        BUDGET_CHANGED = "budget_changed", "Budget changed"
        GRANT_ADDED = "grant_added", "Access granted"
        GRANT_REMOVED = "grant_removed", "Access revoked"
        RUN_APPROVED = "run_approved", "Run approved"
        RUN_REJECTED = "run_rejected", "Run rejected"
        APPROVAL_THRESHOLD_CHANGED = "approval_threshold_changed", "Approval threshold changed"
        MODEL_DEPLOYED = "model_deployed", "Model deployed"
        MODEL_UNDEPLOYED = "model_undeployed", "Model deployment stopped"
        SERVING_KEY_CREATED = "serving_key_created", "Serving API key created"
        SERVING_KEY_REVOKED = "serving_key_revoked", "Serving API key revoked"
        COMPOSITION_CHANGED = "composition_changed", "Composition policy changed"

    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="audit_entries")
    dataset = models.ForeignKey(PrivateDataset, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="audit_entries")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.PROTECT, related_name="audit_entries")
    comment = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="What changed: before and after values.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor} at {self.created_at:%Y-%m-%d %H:%M}"
