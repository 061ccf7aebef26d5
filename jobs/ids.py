"""Integers that come from outside (URL paths, query strings, JSON bodies) bounded to what the
database holds: a signed 64-bit integer (BigAutoField ids, BigIntegerField). A wider value in a
query is an OverflowError on SQLite (a 500) where PostgreSQL quietly finds nothing, so it is
turned away where it enters, the same on both, and never reaches a query.

- the API (django-ninja): annotate path, query and body fields with `DbId` or `DbCount`;
  pydantic refuses a value out of range and the API answers 400 with the field and its bound;
- the pages: `<id:name>` in urls.py (the "id" converter, registered by jobs.apps), which does not
  match a number out of range, so the page is a 404 as for any id that does not exist;
- a page's query string or a websocket's: `query_int`;
- a job parameter: an int parameter with no "max" of its own stops at DB_INT_MAX (jobs.kinds).
"""
from typing import Annotated

from pydantic import Field

DB_INT_MIN = -(2**63)
DB_INT_MAX = 2**63 - 1

DbId = Annotated[int, Field(ge=1, le=DB_INT_MAX)]  # a row id: ids start at 1
DbCount = Annotated[int, Field(ge=0, le=DB_INT_MAX)]  # an offset or a cursor (an event seq)
DbInt = Annotated[int, Field(ge=DB_INT_MIN, le=DB_INT_MAX)]  # any value of a BigIntegerField


class IdConverter:
    """`<id:job_id>`: digits that fit a database id; a larger number does not match (Django's
    `<int:...>` passes a number of any length on to the query)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > DB_INT_MAX:
            raise ValueError(f"{value} is above the largest database id")  # Django: no match, 404
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


def query_int(text: str | None, *, minimum: int = 1) -> int | None:
    """A whole number from a query-string value, from `minimum` (ids start at 1) to DB_INT_MAX;
    None when it is anything else (not plain ASCII digits, too small, too large)."""
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if minimum <= number <= DB_INT_MAX else None
