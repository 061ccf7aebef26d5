"""URLs of the JSON API, for `path("api/", include("jobs.api.urls"))` (namespace "api")."""
from . import api

urlpatterns, _, app_name = api.urls  # (patterns, "ninja", the namespace "api")
