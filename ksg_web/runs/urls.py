from django.urls import path

from jobs import token_views

from . import approval_views, run_views, views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("submit/<str:kind>/", views.job_submit_view, name="submit"),
    path("<id:job_id>/", views.job_detail, name="detail"),
    path("<id:job_id>/events/", views.job_events, name="events"),
    path("<id:job_id>/cancel/", views.job_cancel_view, name="cancel"),
    path("<id:job_id>/report/", views.run_report_view, name="report"),
    path("<id:job_id>/export/", views.run_export_view, name="run-export"),
    path("<id:job_id>/report.json", views.run_report_json_view, name="report-json"),
    path("<id:job_id>/report.csv", views.run_report_csv_view, name="report-csv"),
    path("artifacts/<id:artifact_id>/download/", views.artifact_download, name="artifact-download"),
    path("runs/", run_views.run_list, name="run-list"),
    path("runs/new/", run_views.run_new, name="run-new"),
    path("runs/compare/", run_views.run_compare, name="run-compare"),
    path("<id:job_id>/timeline/", run_views.run_timeline_view, name="run-timeline"),
    path("api-tokens/", token_views.api_tokens, name="api-tokens"),
    path("api-tokens/<id:token_id>/revoke/", token_views.api_token_revoke_view, name="api-token-revoke"),
]

# the compliance officer's decisions on runs, served in the compliance pages' namespace (ksg_web.urls)
approval_urlpatterns = [
    path("approvals/<id:run_id>/approve/", approval_views.approval_decide, {"decision": "approve"}, name="approve"),
    path("approvals/<id:run_id>/reject/", approval_views.approval_decide, {"decision": "reject"}, name="reject"),
]
