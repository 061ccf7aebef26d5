"""Django admin for the privacy app. The ledger and the audit trail are read-only for everyone,
superusers included; a budget's limit and a dataset's approval threshold change only through
their audited services (a form asking why), and grants through dataset_grant / dataset_revoke."""
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from .forms import BudgetChangeForm
from .models import AuditEntry, DatasetGrant, LedgerEntry, PrivacyBudget, PrivateDataset
from .selectors import budget_balance
from .services import (AccessRefused, BudgetConfigError, approval_threshold_change, budget_limit_change,
                       dataset_grant, dataset_revoke)
from .templatetags.ksg_compliance import epsilon


class ReadOnlyAdmin(admin.ModelAdmin):
    """Visible to those with the view permission, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _balance_text(budget: PrivacyBudget) -> str:
    b = budget_balance(budget=budget)
    text = f"spent {epsilon(b.spent)}, reserved {epsilon(b.reserved)}, left {epsilon(b.left)} of {epsilon(b.limit)}"
    return text + (f"; {b.nonprivate_releases} non-private release(s)" if b.nonprivate_releases else "")


class PrivacyBudgetInline(admin.StackedInline):
    model = PrivacyBudget
    can_delete = False
    fields = ("epsilon_limit", "delta", "accountant", "balance", "change_link")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # shown read-only; the limit changes through the audited form (change_link)

    @admin.display(description="Balance (from the ledger)")
    def balance(self, budget):
        return "-" if budget.pk is None else _balance_text(budget)

    @admin.display(description="Change")
    def change_link(self, budget):
        if budget.pk is None:
            return "-"
        url = reverse("admin:privacy_privacybudget_edit", args=[budget.pk])
        return format_html('<a href="{}">Change the limit or the approval threshold (audited)</a>', url)


@admin.register(PrivateDataset)
class PrivateDatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "record_count", "train_count", "heldout_count", "approval_epsilon_threshold",
                    "created_at")
    search_fields = ("name", "sha256", "owner__username")
    list_filter = ("allow_nonprivate_baselines",)
    readonly_fields = ("path", "source_format", "field_mapping", "sha256", "size_bytes", "record_count",
                       "train_count", "heldout_count", "split_seed", "pii_summary", "canary_count", "canary_repeats",
                       "allow_nonprivate_baselines", "identifying_fields", "approval_epsilon_threshold", "created_at")
    inlines = [PrivacyBudgetInline]

    def has_add_permission(self, request):
        return False  # registration validates and stores the file: use ksg_dataset_add

    def has_delete_permission(self, request, obj=None):
        return False  # its ledger and audit trail refer to it for good


@admin.register(PrivacyBudget)
class PrivacyBudgetAdmin(ReadOnlyAdmin):
    """Budgets are listed read-only; "Change (audited)" opens a form that calls
    budget_limit_change and approval_threshold_change with a required comment."""

    list_display = ("dataset", "epsilon_limit", "balance", "delta", "accountant", "approval_threshold", "edit_link")
    search_fields = ("dataset__name",)
    list_filter = ("accountant",)
    readonly_fields = ("dataset", "epsilon_limit", "delta", "accountant", "balance", "approval_threshold",
                       "edit_link", "created_at")

    def get_urls(self):
        edit = self.admin_site.admin_view(self.edit_view)
        return [path("<id:budget_id>/edit/", edit, name="privacy_privacybudget_edit"), *super().get_urls()]

    @admin.display(description="Balance (from the ledger)")
    def balance(self, budget):
        return _balance_text(budget)

    @admin.display(description="Approval above epsilon")
    def approval_threshold(self, budget):
        threshold = budget.dataset.approval_epsilon_threshold
        return "never" if threshold is None else threshold

    @admin.display(description="Change")
    def edit_link(self, budget):
        return format_html('<a href="{}">Change (audited)</a>', reverse("admin:privacy_privacybudget_edit",
                                                                          args=[budget.pk]))

    def edit_view(self, request, budget_id: int):
        budget = get_object_or_404(PrivacyBudget.objects.select_related("dataset"), pk=budget_id)
        dataset = budget.dataset
        if not request.user.has_perm("privacy.change_privacybudget"):
            raise PermissionDenied
        initial = {"epsilon_limit": budget.epsilon_limit,
                   "approval_epsilon_threshold": dataset.approval_epsilon_threshold}
        form = BudgetChangeForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                changed = _budget_change(budget, form.cleaned_data, actor=request.user)
            except (BudgetConfigError, AccessRefused) as error:
                form.add_error(None, str(error))
            else:
                if changed:
                    messages.success(request, f"Changed {' and '.join(changed)} of '{dataset.name}' (audited).")
                else:
                    messages.info(request, "Nothing changed, so nothing was recorded.")
                return redirect("admin:privacy_privacybudget_changelist")
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": f"Change the budget of {dataset.name}", "form": form, "budget": budget, "dataset": dataset,
                   "balance": _balance_text(budget)}
        return TemplateResponse(request, "admin/privacy/privacybudget/edit.html", context)


@transaction.atomic
def _budget_change(budget: PrivacyBudget, data: dict, *, actor) -> list[str]:
    """Call the audited service of each value that changed; one transaction for both."""
    changed, dataset = [], budget.dataset
    if data["epsilon_limit"] != budget.epsilon_limit:
        budget_limit_change(dataset=dataset, epsilon_limit=data["epsilon_limit"], actor=actor, comment=data["comment"])
        changed.append("the epsilon limit")
    if data["approval_epsilon_threshold"] != dataset.approval_epsilon_threshold:
        approval_threshold_change(dataset=dataset, threshold=data["approval_epsilon_threshold"], actor=actor,
                                  comment=data["comment"])
        changed.append("the approval threshold")
    return changed


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """The ledger is append-only: visible to administrators, never editable, not even by them."""

    list_display = ("created_at", "budget", "job", "kind", "epsilon", "delta", "actor", "reason")
    list_filter = ("kind", "budget__dataset", "created_at")
    search_fields = ("reason", "actor__username", "job__id__exact")
    readonly_fields = [field.name for field in LedgerEntry._meta.fields]
    date_hierarchy = "created_at"


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit trail is append-only, like the ledger."""

    list_display = ("created_at", "action", "actor", "dataset", "job", "comment")
    list_filter = ("action", "dataset", "created_at")
    search_fields = ("comment", "actor__username", "dataset__name", "job__id__exact")
    readonly_fields = [field.name for field in AuditEntry._meta.fields]
    date_hierarchy = "created_at"


class DatasetGrantForm(forms.ModelForm):
    class Meta:
        model = DatasetGrant
        fields = ("dataset", "user", "group", "can_read_records")

    def clean(self):
        cleaned = super().clean()
        new = "user" in self.fields  # on a change, who the grant is for is read-only
        if new and (cleaned.get("user") is None) == (cleaned.get("group") is None):
            raise forms.ValidationError("grant to exactly one user or one group")
        return cleaned


@admin.register(DatasetGrant)
class DatasetGrantAdmin(admin.ModelAdmin):
    """Grants go through dataset_grant / dataset_revoke, so each leaves an audit entry."""

    form = DatasetGrantForm
    list_display = ("dataset", "user", "group", "can_read_records", "granted_by", "created_at")
    list_filter = ("can_read_records", "dataset")
    search_fields = ("dataset__name", "user__username", "group__name")

    def get_readonly_fields(self, request, obj=None):
        # who and what a grant is about never changes: revoke it and grant anew
        return ("dataset", "user", "group", "granted_by", "created_at") if obj else ("granted_by", "created_at")

    def save_model(self, request, obj, form, change):
        grant = dataset_grant(dataset=obj.dataset, actor=request.user, user=obj.user, group=obj.group,
                              can_read_records=obj.can_read_records)
        obj.pk, obj.granted_by_id, obj.created_at = grant.pk, grant.granted_by_id, grant.created_at
        obj._state.adding = False

    def delete_model(self, request, obj):
        dataset_revoke(grant=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for grant in queryset.select_related("dataset", "user", "group"):
                dataset_revoke(grant=grant, actor=request.user)
