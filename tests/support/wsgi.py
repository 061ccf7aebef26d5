"""Calling the platform's WSGI application in-process from a test (schemathesis, the openai
client over httpx's WSGI transport) without it closing the test's database connection."""
import contextlib

from django.core import signals
from django.db import close_old_connections


@contextlib.contextmanager
def wsgi_in_test_transaction():
    """The WSGI handler closes the database connection after each request (request_finished);
    inside a test that would close the test's own transaction. django.test.Client does the same."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
