from django.urls import path

from . import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="list"),
    path("submit/<str:kind>/", views.job_submit_view, name="submit"),
    path("<int:job_id>/", views.job_detail, name="detail"),
    path("<int:job_id>/events/", views.job_events, name="events"),
    path("<int:job_id>/cancel/", views.job_cancel_view, name="cancel"),
    path("artifacts/<int:artifact_id>/download/", views.artifact_download, name="artifact-download"),
]
