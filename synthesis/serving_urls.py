from django.urls import path

from . import serving_pages

app_name = "serving"
urlpatterns = [
    path("", serving_pages.deployment_list, name="list"),
    path("<id:deployment_id>/", serving_pages.deployment_detail, name="detail"),
    path("<id:deployment_id>/stop/", serving_pages.deployment_stop_view, name="stop"),
    path("keys/<id:key_id>/revoke/", serving_pages.serving_key_revoke_view, name="key-revoke"),
    path("audit/", serving_pages.serving_audit, name="audit"),
    path("audit.csv", serving_pages.serving_audit_csv, name="audit-csv"),
    path("deploy/<id:job_id>/", serving_pages.deploy_view, name="deploy"),
]
