"""The JSON API under /api/ (django-ninja), for notebooks and pipelines: the same services and
the same access rules (privacy.access, jobs.selectors.jobs_visible_to) as the web pages.
DESCRIPTION (shown in /api/docs) says how to authenticate and what each error status means."""
from ninja import NinjaAPI, Schema

from jobs.api.auth import TokenAuth, errors_register
from privacy import api as datasets
from privacy.access import user_roles
from privacy.datasets import DatasetError
from privacy.services import AccessRefused, BudgetConfigError, BudgetExceeded, NonPrivateRefused
from synthesis.prompts import DOMAINS

from .runs import api as runs
from .runs.pipeline import BASELINES
from .runs.presets import PRESETS

DESCRIPTION = """\
Authentication: `Authorization: Bearer <key>` with an API token (the API tokens page, or
`manage.py ksg_token_add USERNAME --name NAME`). No session authentication, so no CSRF either.

Errors are JSON: `{"detail": "..."}` and, for input problems, `"errors": [one line each]`.
- 400 invalid input (a field, the file, a preset, an override, a stage parameter, an id or
  offset above 9223372036854775807, the largest integer the database holds)
- 401 no token, an unknown or revoked one
- 403 you may see the dataset but not do this (submit a run on a dataset you were not granted,
  register a dataset as a compliance officer, a non-private baseline the dataset does not allow)
- 404 not found, or not yours to see: the API does not tell the two apart
- 409 the budget does not have the epsilon left; the job has already finished
- 503 the task queue did not take the job
"""

api = NinjaAPI(
    title="KnowledgeSG API", version="1", urls_namespace="api", auth=TokenAuth(),
    description=DESCRIPTION,
)
# The apps' service exceptions and what each means to a client (the engine's own: jobs.api.auth).
errors_register(api, (
    (DatasetError, 400),         # the file or a registration field (errors: one line per problem)
    (BudgetConfigError, 400),    # epsilon limit, delta, accountant
    (AccessRefused, 403),
    (NonPrivateRefused, 403),    # a non-private baseline the dataset does not allow
    (BudgetExceeded, 409),       # the target epsilon does not fit what is left of the budget
))
api.add_router("/", datasets.router)
api.add_router("/", runs.router)


class MeOut(Schema):
    username: str
    roles: list[str]


class PresetsOut(Schema):
    presets: dict[str, dict[str, dict]]
    baselines: dict[str, list[str]]
    domains: list[str]


@api.get("/me", response=MeOut, tags=["account"], summary="Who the token belongs to")
def me(request):
    return {"username": request.user.get_username(), "roles": sorted(user_roles(request.user))}


@api.get("/presets", response=PresetsOut, tags=["runs and jobs"], summary="Presets, baselines, domains")
def presets(request):
    """Every preset's stage parameters (what POST /api/runs starts from), and each baseline's stages."""
    return {"presets": PRESETS, "baselines": {name: list(stages) for name, stages in BASELINES.items()},
            "domains": list(DOMAINS)}
