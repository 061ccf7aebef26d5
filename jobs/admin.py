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
    list_display = ("id", "kind", "status", "owner", "dataset", "attempts", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("id", "owner__username", "celery_task_id")
    readonly_fields = (
        "kind", "status", "params", "owner", "dataset", "parent", "celery_task_id", "created_at",
        "started_at", "finished_at", "heartbeat_at", "error", "attempts", "cancel_requested", "last_event_seq",
    )
    inlines = [JobEventInline]

    def has_add_permission(self, request):
        return False  # jobs are submitted through the service layer, which enqueues them


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "kind", "path", "bytes", "sha256", "created_at")
    list_filter = ("kind",)
    readonly_fields = ("job", "kind", "path", "sha256", "bytes", "created_at")

    def has_add_permission(self, request):
        return False
