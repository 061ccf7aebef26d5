"""jobs.db_retry: a job write that meets a broken connection is run again whole, within the
retry window, and never from inside an enclosing transaction."""
import pytest
from django.db import OperationalError, transaction

from jobs.db_retry import db_retried

pytestmark = pytest.mark.django_db(transaction=True)


def flaky(failures: int):
    calls = []

    @db_retried
    def write() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise OperationalError("server closed the connection unexpectedly")
        return "written"

    return write, calls


def test_a_write_is_retried_until_the_database_answers(settings):
    settings.KSG_DB_RETRY_SECONDS = 10
    write, calls = flaky(failures=3)
    assert write() == "written" and len(calls) == 4


def test_a_database_that_stays_away_raises_after_the_window(settings):
    settings.KSG_DB_RETRY_SECONDS = 1
    write, calls = flaky(failures=1000)
    with pytest.raises(OperationalError):
        write()
    assert 2 <= len(calls) <= 5  # 0.2 + 0.4 s of waits fit in one second, then it gives up


def test_inside_a_transaction_the_error_goes_to_the_enclosing_write(settings):
    settings.KSG_DB_RETRY_SECONDS = 10
    write, calls = flaky(failures=1)
    with pytest.raises(OperationalError), transaction.atomic():
        write()
    assert len(calls) == 1


def test_other_errors_are_not_retried(settings):
    calls = []

    @db_retried
    def write():
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        write()
    assert len(calls) == 1
