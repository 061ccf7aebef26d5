"""Response headers that Django's SecurityMiddleware does not set: the Content-Security-Policy.

Every script the pages run is a file under /static/ (no inline script, no eval: the Plotly
charts are SVG traces, whose code path does not compile strings), so scripts are 'self' only.
Styles allow 'unsafe-inline' because Plotly sets style attributes on the SVG it draws; that
lets an injected style restyle a page, never run code. Websockets go to the same origin.
"""
from django.conf import settings

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
