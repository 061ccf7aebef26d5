from django.contrib import admin

from .models import PrivacyBudget, PrivateDataset


class PrivacyBudgetInline(admin.StackedInline):
    model = PrivacyBudget
    can_delete = False


@admin.register(PrivateDataset)
class PrivateDatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "record_count", "size_bytes", "created_at")
    search_fields = ("name", "sha256")
    readonly_fields = ("path", "sha256", "record_count", "size_bytes", "created_at")
    inlines = [PrivacyBudgetInline]
