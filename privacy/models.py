"""Private datasets and their privacy budgets (first cut; the ledger comes with the privacy core)."""
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class PrivateDataset(models.Model):
    """A file of private records under KSG_PRIVATE_DIR; it never leaves the client side."""

    name = models.CharField(max_length=200, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="datasets")
    path = models.CharField(max_length=500, help_text="Relative to KSG_PRIVATE_DIR.")
    sha256 = models.CharField(max_length=64)
    record_count = models.PositiveIntegerField()
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PrivacyBudget(models.Model):
    """The (epsilon, delta) a dataset may spend in total, across all its DP jobs."""

    class Accountant(models.TextChoices):
        PRV = "prv", "PRV (privacy random variables)"
        RDP = "rdp", "RDP (Renyi differential privacy)"
        GDP = "gdp", "GDP (Gaussian differential privacy)"

    dataset = models.OneToOneField(PrivateDataset, on_delete=models.PROTECT, related_name="budget")
    epsilon_limit = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal("0.000001"))]
    )
    delta = models.FloatField(
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A probability; below 1/n for n records.",
    )
    accountant = models.CharField(max_length=8, choices=Accountant.choices, default=Accountant.PRV)
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
