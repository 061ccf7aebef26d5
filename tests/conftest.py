"""Shared fixtures. Tests use real components: the database DATABASE_URL names (SQLite when unset),
Redis when REDIS_URL is set (else the in-memory equivalents), and a real Celery worker thread."""
import time

import pytest

pytest_plugins = ("celery.contrib.pytest",)


@pytest.fixture(scope="session")
def celery_worker_pool():
    return "solo"


@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {"queues": ["client", "server"], "perform_ping_check": False, "shutdown_timeout": 30}


@pytest.fixture(scope="session")
def celery_session_app():
    """The platform's own Celery app (broker: Redis when REDIS_URL is set, else memory); the
    session worker (`celery_session_worker`) consumes both queues for the whole test run."""
    from ksg_web.celery import app

    if app.conf.broker_url.startswith("redis"):
        app.control.purge()  # messages a previous run left behind (CI uses Redis db 15 for tests)
    return app


@pytest.fixture()
def make_user(db):
    def make(username: str, *, role: str = "data_scientist", staff: bool = False):
        """A user in a role group (privacy.access.ROLES); staff=True makes an administrator."""
        from privacy.services import user_create

        return user_create(username=username, role="admin" if staff else role, password="a-long-password-1")

    return make


def wait_until(read, done, *, timeout: float = 30.0, interval: float = 0.05):
    """Poll `read()` until `done(value)`; return the value, or fail naming what was last seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s; last value: {value!r}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def fast_password_hashing(request, settings):
    """Argon2 costs about 0.3 s a hash on these 2 cores; tests that are not about passwords hash
    with MD5 instead. Tests marked `real_password_hashing` keep the production hashers."""
    if request.node.get_closest_marker("real_password_hashing") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
