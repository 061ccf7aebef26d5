"""Response headers that Django's SecurityMiddleware does not set: the Content-Security-Policy.

Every script the pages run is a file under /static/ (no inline script, no eval: the Plotly
charts are SVG traces, whose code path does not compile strings), so scripts are 'self' only.
Styles allow 'unsafe-inline' because Plotly sets style attributes on the SVG it draws; that
lets an injected style restyle a page, never run code. Websockets go to the same origin.
"""
from django.conf import settings
from django.http import JsonResponse

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.KSG_CONTENT_SECURITY_POLICY)
        return response


class RequestSizeLimitMiddleware:
    """Refuse (413) a request whose Content-Length claims more than KSG_MAX_REQUEST_BYTES (the
    largest dataset file plus room for the form), before any of its body is read."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            claimed = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number of bytes"}, status=400)
        limit = settings.KSG_MAX_REQUEST_BYTES
        if claimed > limit:
            return JsonResponse({"detail": f"the request is {claimed} bytes; at most {limit} are accepted "
                                           f"(the dataset file limit is {settings.KSG_MAX_DATASET_BYTES} bytes)"},
                                status=413)
        return self.get_response(request)
