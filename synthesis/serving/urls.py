from django.urls import path

from . import pages

app_name = "serving"
urlpatterns = [
    path("", pages.deployment_list, name="list"),
    path("<id:deployment_id>/", pages.deployment_detail, name="detail"),
    path("<id:deployment_id>/stop/", pages.deployment_stop_view, name="stop"),
    path("keys/<id:key_id>/revoke/", pages.serving_key_revoke_view, name="key-revoke"),
    path("audit/", pages.serving_audit, name="audit"),
    path("audit.csv", pages.serving_audit_csv, name="audit-csv"),
    path("deploy/<id:job_id>/", pages.deploy_view, name="deploy"),
]
