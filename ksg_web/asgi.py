"""ASGI entry point: Django over HTTP, the job stream and the compliance feed over websockets
(daphne serves both)."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")
django_http = get_asgi_application()  # set up Django before importing consumers and models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from jobs.routing import websocket_urlpatterns  # noqa: E402
from privacy.routing import websocket_urlpatterns as compliance_websocket_urlpatterns  # noqa: E402

websocket_routes = URLRouter(websocket_urlpatterns + compliance_websocket_urlpatterns)
application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_http) if settings.KSG_SERVE_STATIC else django_http,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(websocket_routes)),
    }
)
