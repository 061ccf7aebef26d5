"""Bearer-token authentication and the JSON errors of the API: every error is
{"detail": "<what went wrong and what to do>"} (plus "errors": [...] for input problems)."""
import logging

from django.http import Http404
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from ..kinds import JobParamsError
from ..services import JobQueueUnavailable, JobStateError
from ..tokens import ApiTokenError, api_token_authenticate

logger = logging.getLogger(__name__)

# The engine's service exceptions and the status each means to a client; the apps above add
# theirs (ksg_web.api). Views raise nothing of their own beyond HttpError: what a service refuses
# reaches the client with the service's message.
SERVICE_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (JobParamsError, 400),       # preset, baseline, override, a stage parameter out of bounds
    (JobStateError, 409),        # e.g. cancelling a finished job
    (JobQueueUnavailable, 503),  # the broker did not take the job
)


class ErrorOut(Schema):
    detail: str
    errors: list[str] | None = None


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <key>` with a key from jobs.tokens. Sets request.user to the
    token's user, so the same access functions as the web pages apply."""

    def __call__(self, request):
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError(message="this endpoint needs an API token: send the header "
                                              "'Authorization: Bearer <key>' (create a key on the API tokens page)")
        return self.authenticate(request, key.strip())

    def authenticate(self, request, token: str):
        try:
            user = api_token_authenticate(key=token)
        except ApiTokenError as error:
            raise AuthenticationError(message=str(error)) from None
        request.user = user
        return user


def errors_register(api, service_errors: tuple[tuple[type[Exception], int], ...] = ()) -> None:
    """Install the API's exception handlers on a NinjaAPI: the engine's SERVICE_ERRORS and the
    (exception class, HTTP status) pairs of the apps that build on it."""

    def respond(request, status: int, detail: str, errors: list[str] | None = None):
        body = {"detail": detail} if errors is None else {"detail": detail, "errors": errors}
        response = api.create_response(request, body, status=status)
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        return respond(request, exc.status_code, exc.message)

    @api.exception_handler(Http404)
    def not_found(request, exc: Http404):
        return respond(request, 404, str(exc) or "not found")

    @api.exception_handler(ValidationError)
    def invalid_input(request, exc: ValidationError):
        errors = [_validation_line(error) for error in exc.errors]
        return respond(request, 400, "invalid request: " + "; ".join(errors), errors)

    for exception_class, status in SERVICE_ERRORS + tuple(service_errors):
        api.add_exception_handler(exception_class, _service_handler(respond, status))

    @api.exception_handler(Exception)
    def unexpected(request, exc: Exception):
        logger.exception("API %s %s failed", request.method, request.path)
        return respond(request, 500, "internal error; the server log has the details")


def _service_handler(respond, status: int):
    def handler(request, exc: Exception):
        if status != 400:
            return respond(request, status, str(exc))
        # Input problems always come with a list, one line per problem (DatasetError has its own).
        errors = getattr(exc, "errors", None)
        return respond(request, status, str(exc), list(errors) if isinstance(errors, list) and errors else [str(exc)])

    return handler


def _validation_line(error: dict) -> str:
    """'target_epsilon (body): Input should be a valid number' from a pydantic error."""
    location = [str(part) for part in error.get("loc", ())]
    where, field_path = (location[0], location[1:]) if location else ("request", [])
    if where == "body" and len(field_path) > 1:
        field_path = field_path[1:]  # drop the name of the body parameter
    return f"{'.'.join(field_path) or where} ({where}): {error.get('msg', 'invalid')}"
