"""The data scientist's dataset pages, mounted at /datasets/."""
from django.urls import path

from . import dataset_views

app_name = "datasets"
urlpatterns = [
    path("", dataset_views.dataset_list, name="list"),
    path("new/", dataset_views.dataset_new, name="new"),
    path("<id:dataset_id>/", dataset_views.dataset_detail, name="detail"),
    path("<id:dataset_id>/grants/", dataset_views.dataset_grant_view, name="grant"),
    path("<id:dataset_id>/composition/", dataset_views.dataset_composition_view, name="composition"),
    path("<id:dataset_id>/grants/<id:grant_id>/revoke/", dataset_views.dataset_revoke_view, name="revoke"),
]
