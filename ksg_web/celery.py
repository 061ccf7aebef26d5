"""The Celery application. Workers: `celery -A ksg_web worker -Q client` (or `-Q server`)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")

app = Celery("ksg_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
