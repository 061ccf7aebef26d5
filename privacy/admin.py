from django.contrib import admin

from .models import LedgerEntry, PrivacyBudget, PrivateDataset
from .selectors import budget_balance


class PrivacyBudgetInline(admin.StackedInline):
    model = PrivacyBudget
    can_delete = False
    readonly_fields = ("balance",)

    @admin.display(description="Balance (from the ledger)")
    def balance(self, budget):
        if budget.pk is None:
            return "-"
        b = budget_balance(budget=budget)
        return f"spent {b.spent}, reserved {b.reserved}, left {b.left} of {b.limit}"


@admin.register(PrivateDataset)
class PrivateDatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "record_count", "train_count", "heldout_count", "created_at")
    search_fields = ("name", "sha256")
    readonly_fields = ("path", "source_format", "field_mapping", "sha256", "size_bytes", "record_count",
                       "train_count", "heldout_count", "split_seed", "pii_summary", "created_at")
    inlines = [PrivacyBudgetInline]

    def has_add_permission(self, request):
        return False  # registration validates and stores the file: use ksg_dataset_add


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """The ledger is append-only: visible to administrators, never editable, not even by them."""

    list_display = ("created_at", "budget", "job", "kind", "epsilon", "delta", "actor", "reason")
    list_filter = ("kind", "budget__dataset")
    search_fields = ("reason", "actor__username", "job__id")
    readonly_fields = [field.name for field in LedgerEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
