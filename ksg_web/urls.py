from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from privacy import urls as privacy_urls
from synthesis.serving import views as serving_views

from .api import api
from .runs import urls as runs_urls
from .runs.statement_views import dataset_statement_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="jobs:list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("jobs/", include("ksg_web.runs.urls")),
    path("datasets/", include("privacy.dataset_urls")),
    # the statement names each run's attack results, so it is served from the runs' layer
    path("datasets/<id:dataset_id>/statement/", dataset_statement_view, name="dataset-statement"),
    path("api/", api.urls),  # namespace "api"
    path("compliance/", include((privacy_urls.urlpatterns + runs_urls.approval_urlpatterns, "compliance"))),
    path("serving/", include("synthesis.serving.urls")),
    # OpenAI-compatible serving of deployed models (serving keys, not platform tokens)
    path("v1/models", serving_views.models_list, name="v1-models"),
    path("v1/chat/completions", serving_views.chat_completions, name="v1-chat-completions"),
]
