"""A dataset's identifying fields: the columns the uploader marks as naming the person a record
is about (`patient_name`, `email`). Each record keeps their values as {"identity": {field: value}},
client side like the rest of the record, so the evaluation's name-reconstruction attack takes its
targets and candidates from them, not only from what the PII detector finds in the text (which
misses names outside its lists).

Plain data in, plain data out: each function returns the problems it finds as messages, and
privacy.datasets reports them with the file's other problems.
"""
import math

MAX_IDENTIFYING_FIELDS = 20
MAX_IDENTITY_CHARS = 1_000  # a name or an email; a longer value is the wrong column
FIELDS_SHOWN = 8  # how many of the records' field names an "is in no record" error lists


def is_field_name(name) -> bool:
    """A field (column) name: printable text, 1 to 100 characters once stripped."""
    return isinstance(name, str) and 0 < len(name.strip()) <= 100 and name.strip().isprintable()


def identifying_fields_named(names) -> tuple[tuple[str, ...], list[str]]:
    """(the names stripped, in order; () for None or none, problems with the list itself): each
    must be a field name, named once, at most MAX_IDENTIFYING_FIELDS of them."""
    if names is None:
        return (), []
    if isinstance(names, str) or not isinstance(names, list | tuple):
        return (), [f"identifying fields must be a list of field names, not {names!r}"]
    if len(names) > MAX_IDENTIFYING_FIELDS:
        return (), [f"identifying fields: {len(names)} named; the limit is {MAX_IDENTIFYING_FIELDS}: name the fields "
                    "that identify the person (a name, an email), not every column"]
    problems = [f"identifying field {name!r} must be the name of a field (printable text, up to 100 characters)"
                for name in names if not is_field_name(name)]
    if problems:
        return (), problems
    stripped = tuple(name.strip() for name in names)
    repeated = [name for name in dict.fromkeys(stripped) if stripped.count(name) > 1]
    return stripped, [f"identifying field {name!r} is named more than once; name each field once" for name in repeated]


def identity_of(row: dict, fields: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """({field: value as stripped text} for each identifying field with a non-empty value in
    the row, problems with the others). Text is kept, a number becomes text; a missing, null or
    empty value is left out (not an error); a list, object, boolean or non-finite number is a
    problem."""
    identity, problems = {}, []
    for name in fields:
        value = row.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int | float | None):
            kind = {bool: "a boolean", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
            problems.append(f"identifying field {name!r} is {kind}, not text; write the value as a string, or "
                            "leave the field out of this record")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"identifying field {name!r} is {value!r}, not text; write the value as a string")
            continue
        text = "" if value is None else str(value).strip()
        if len(text) > MAX_IDENTITY_CHARS:
            problems.append(f"identifying field {name!r} is {len(text):,} characters; an identifying value (a "
                            f"name, an email) is at most {MAX_IDENTITY_CHARS:,}: is it the right field?")
        elif text:
            identity[name] = text
    return identity, problems


def identity_field_problems(rows: list[tuple[int, dict]], fields: tuple[str, ...], *, source_format: str,
                            field_mapping: dict) -> list[str]:
    """What is wrong with the identifying fields for this file as a whole: a field that is the
    file's instruction or response, a CSV column the header lacks, a JSONL field no record has
    (probably a typo). rows are (line, {field: value}) as read; the header of a CSV file is
    the keys of its rows."""
    problems = []
    text_fields = {source: target for target, source in field_mapping.items()}
    for name in fields:
        if name in text_fields:
            problems.append(f"identifying field {name!r} is the file's {text_fields[name]} field; name a field that "
                            "identifies the person (e.g. patient_name), not the text")
    absent = [name for name in fields if name not in text_fields and rows and all(name not in row for _, row in rows)]
    if not absent:
        return problems
    if source_format == "csv":
        return problems + [f"line 1: the header has no {name!r} column, an identifying field you named; add it, or "
                           "leave it out of the identifying fields" for name in absent]
    keys = list(dict.fromkeys(key for _, row in rows for key in row))
    shown = ", ".join(map(repr, keys[:FIELDS_SHOWN])) + (f" and {len(keys) - FIELDS_SHOWN} more"
                                                         if len(keys) > FIELDS_SHOWN else "")
    return problems + [f"identifying field {name!r} is in no record; the records have the fields {shown}: check "
                       "its spelling" for name in absent]
