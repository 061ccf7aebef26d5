from django.urls import path

from .consumers import ComplianceConsumer

websocket_urlpatterns = [
    path("ws/compliance/", ComplianceConsumer.as_asgi()),
]
