"""The Celery application. Workers: `celery -A ksg_web worker -Q client` (or `-Q server`)."""
import os

from celery import Celery
from celery.signals import worker_init
from synthesis.lm.loader import loader_warm

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")

app = Celery("ksg_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _models_warm(**kwargs) -> None:
    """A worker imports the model-loading code before its first task (prefork children inherit
    it), so a stage's model is ready in about half a second (docs/PERFORMANCE.md)."""
    loader_warm()
