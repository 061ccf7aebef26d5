from django.urls import path

from . import views

app_name = "compliance"  # ksg_web.urls adds the run approval decisions (ksg_web.runs.urls.approval_urlpatterns)
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("approvals/", views.approvals, name="approvals"),
    path("ledger/", views.ledger, name="ledger"),
    path("ledger.csv", views.ledger_export, {"fmt": "csv"}, name="ledger-csv"),
    path("ledger.json", views.ledger_export, {"fmt": "json"}, name="ledger-json"),
    path("audit/", views.audit_trail, name="audit"),
    path("audit.csv", views.audit_export, {"fmt": "csv"}, name="audit-csv"),
    path("audit.json", views.audit_export, {"fmt": "json"}, name="audit-json"),
    path("datasets/<id:dataset_id>/audit/", views.dataset_audit_report, name="dataset-audit"),
]
