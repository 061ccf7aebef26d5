"""The embedded mode: one process that serves HTTP and websockets (daphne) and runs jobs in an
in-process Celery worker. Jobs still go through Celery (a memory broker when REDIS_URL is
unset), so the code path is the one the distributed workers run."""
import logging
import os
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path

from celery import Celery
from celery.app import app_or_default
from celery.worker import WorkController
from django.conf import settings
from django.contrib.auth import get_user_model

from .kinds import CLIENT_QUEUE, SERVER_QUEUE

logger = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"


def embedded_worker_start(app: Celery | None = None, *, queues=(CLIENT_QUEUE, SERVER_QUEUE)) -> WorkController:
    """Start a Celery worker on a daemon thread: solo pool, one task at a time, as a GPU worker.
    `app`: the project's Celery app (the current one, ksg_web.celery) unless another is given."""
    app = app_or_default(app)
    worker = app.WorkController(
        app=app, pool="solo", concurrency=1, queues=list(queues),
        without_heartbeat=True, without_mingle=True, without_gossip=True,
        hostname=f"embedded@{os.uname().nodename}", loglevel="INFO",
    )
    threading.Thread(target=worker.start, name="celery-embedded-worker", daemon=True).start()
    return worker


def admin_ensure() -> tuple[str, str | None]:
    """Make sure a first administrator exists. Returns (username, password or None).

    The password is KSG_ADMIN_PASSWORD if set, else generated; it is written (mode 0600) to
    KSG_DATA_DIR/admin-password.txt so the operator can read it again. None when a superuser
    already existed: the platform never resets a password it did not create.
    """
    users = get_user_model()
    existing = users.objects.filter(is_superuser=True).order_by("pk").first()
    if existing is not None:
        return existing.get_username(), None
    password = os.environ.get("KSG_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    users.objects.create_superuser(username=ADMIN_USERNAME, email="", password=password)
    password_file = Path(settings.KSG_DATA_DIR) / "admin-password.txt"
    password_file.write_text(f"{ADMIN_USERNAME}\n{password}\n")
    password_file.chmod(0o600)
    return ADMIN_USERNAME, password


@contextmanager
def embedded_worker_if_needed(app: Celery | None = None):
    """Run an in-process worker for the duration when the broker is the in-process memory one
    (embedded mode): a job submitted from a terminal there can only be run by that process."""
    worker = embedded_worker_start(app) if settings.KSG_RUN_MODE == "embedded" else None
    try:
        yield worker
    finally:
        if worker is not None:
            worker.stop(in_sighandler=False)
