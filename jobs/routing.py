from django.urls import path

from .consumers import JobStreamConsumer

websocket_urlpatterns = [
    path("ws/jobs/<id:job_id>/", JobStreamConsumer.as_asgi()),
]
