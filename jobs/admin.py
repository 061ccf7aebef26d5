from django.contrib import admin

from .models import Artifact, Job, JobEvent


class JobEventInline(admin.TabularInline):
    model = JobEvent
    fields = ("seq", "kind", "payload", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0
    ordering = ("-seq",)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Jobs are submitted, approved and cancelled through their services; here they are only
    looked up. Search: a job id, owner, kind, status or dataset name."""

    list_display = ("id", "kind", "status", "owner", "dataset", "parent", "attempts", "created_at", "finished_at")
    list_filter = ("status", "kind", "dataset", "owner", "created_at")
    search_fields = ("id__exact", "owner__username", "kind", "status", "dataset__name", "celery_task_id")
    list_select_related = ("owner", "dataset", "parent")
    date_hierarchy = "created_at"
    readonly_fields = (
        "kind", "status", "params", "owner", "dataset", "parent", "celery_task_id", "created_at",
        "started_at", "finished_at", "heartbeat_at", "error", "attempts", "cancel_requested", "last_event_seq",
    )
    inlines = [JobEventInline]

    def has_add_permission(self, request):
        return False  # jobs are submitted through the service layer, which enqueues them

    def has_change_permission(self, request, obj=None):
        return False  # every field is the service layer's; a saved form would change nothing


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    """A job's stream, read-only. Search: a job id, or a kind."""

    list_display = ("job", "seq", "kind", "created_at", "payload")
    list_filter = ("kind",)
    search_fields = ("job__id__exact", "kind")
    list_select_related = ("job",)
    readonly_fields = ("job", "seq", "kind", "payload", "created_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "kind", "path", "bytes", "sha256", "created_at")
    list_filter = ("kind",)
    readonly_fields = ("job", "kind", "path", "sha256", "bytes", "created_at")

    def has_add_permission(self, request):
        return False
