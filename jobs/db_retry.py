"""Writes a worker retries when the database goes away for a moment (a PostgreSQL restart or
failover, a dropped connection).

A stage runs for minutes to hours; a restart of the database in that time must not lose the
job or leave its epsilon unsettled. Each job write is one transaction, so retrying it whole is
safe: the transaction either committed or rolled back entirely. The writes retried here are
also idempotent where a commit could have succeeded unseen (finishing a job, the ledger's
commit and release: each checks what is already there), so a retry never writes twice what must
be written once. Inside an outer transaction nothing is retried here: the outermost retried
write retries the whole transaction.
"""
import functools
import logging
import time

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

DB_ERRORS = (OperationalError, InterfaceError)  # the connection broke or the server is not there


def db_retried(function):
    """Run `function` (a service that is one transaction); if the connection fails, drop it and
    run it again with a doubling delay (0.2 s up to 5 s) for up to KSG_DB_RETRY_SECONDS, then
    raise the last error."""

    @functools.wraps(function)
    def retrying(*args, **kwargs):
        if connection.in_atomic_block:
            return function(*args, **kwargs)  # the enclosing retried write retries this too
        deadline = time.monotonic() + settings.KSG_DB_RETRY_SECONDS
        delay = 0.2
        while True:
            try:
                return function(*args, **kwargs)
            except DB_ERRORS as exc:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("database unavailable in %s (%s: %s); retrying in %.1f s",
                               function.__name__, type(exc).__name__, str(exc).strip()[:200], delay)
                connection_drop()
                time.sleep(delay)
                delay = min(2 * delay, 5.0)

    return retrying


def connection_drop() -> None:
    """Forget this thread's database connection (broken or not); the next query opens a new one."""
    try:
        connection.close()
    except Exception:  # closing a connection whose server vanished can fail too; it is gone either way
        connection.connection = None
