from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from synthesis.serving import views as serving_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="jobs:list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("jobs/", include("jobs.urls")),
    path("datasets/", include("privacy.dataset_urls")),
    path("api/", include("jobs.api.urls")),
    path("compliance/", include("privacy.urls")),
    path("serving/", include("synthesis.serving.urls")),
    # OpenAI-compatible serving of deployed models (serving keys, not platform tokens)
    path("v1/models", serving_views.models_list, name="v1-models"),
    path("v1/chat/completions", serving_views.chat_completions, name="v1-chat-completions"),
]
