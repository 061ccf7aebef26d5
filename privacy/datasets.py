"""Reading, validating and splitting private datasets: plain functions on plain data.

A dataset is a JSON Lines or CSV file of (instruction, response) records. The accepted field
names are the pairs in FIELD_PAIRS; the first pair present in a file wins, and the file must use
it throughout. Every problem found is reported with the line it is on and what to fix.

The privacy unit: a dataset may name the field that identifies the person a record belongs to
(`patient_id`, `customer`): its value is kept as the record's "unit", the split puts each unit
wholly on one side, and DP training protects units, not records. Without one, each record is
its own unit. Exact duplicates (same unit, instruction and response) are reported and kept, or
dropped when asked; never a reason to refuse the file.

Identifying fields: the dataset may also name the fields that identify the person (`patient_name`,
`email`); their values are kept as the record's "identity" (privacy.dataset_identity). Every other
field of the file is dropped.
"""
import csv
import io
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .dataset_identity import identifying_fields_named, identity_field_problems, identity_of, is_field_name

# In order of preference: a record with both instruction/response and question/answer uses the former.
FIELD_PAIRS: tuple[tuple[str, str], ...] = (("instruction", "response"), ("input", "output"), ("question", "answer"))
FORMAT_BY_EXTENSION = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}
MAX_REPORTED_ERRORS = 20
_ACCEPTED_PAIRS = ", ".join(f"{a}/{b}" for a, b in FIELD_PAIRS)


class DatasetError(ValueError):
    """A dataset (or a request about one) that cannot be used; `errors` lists each problem."""

    def __init__(self, errors: str | list[str]):
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        if len(self.errors) == 1:
            message = self.errors[0]
        else:
            message = f"{len(self.errors)} problems found:\n" + "\n".join(f"- {error}" for error in self.errors)
        super().__init__(message)


@dataclass(frozen=True)
class ParsedDataset:
    # each {"instruction": str, "response": str} (+ "unit": str) (+ "identity": {field: str}), values stripped
    records: list[dict]
    source_format: str  # "jsonl" or "csv"
    field_mapping: dict = field(default_factory=dict)  # e.g. {"instruction": "question", "response": "answer"}
    privacy_unit: str = ""  # the field naming the person; "" = each record is its own unit
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, the earlier line it repeats)
    duplicates_dropped: bool = False
    identifying_fields: tuple[str, ...] = ()  # the fields whose values each record keeps as its "identity"
    identity_missing: int = 0  # records with none of them (no "identity" key); 0 without identifying fields

    @property
    def unit_count(self) -> int:
        """Distinct privacy units among the records (records, when no unit field is named)."""
        return len({record["unit"] for record in self.records}) if self.privacy_unit else len(self.records)


class _Problems:
    """Collects problems up to MAX_REPORTED_ERRORS; `full` says when to stop looking."""

    def __init__(self):
        self.errors: list[str] = []
        self.truncated = False

    def add(self, message: str) -> None:
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(message)
        else:
            self.truncated = True

    @property
    def full(self) -> bool:
        return len(self.errors) >= MAX_REPORTED_ERRORS

    def raise_if_any(self) -> None:
        if self.errors:
            errors = sorted(self.errors, key=_line_number)
            if self.truncated:
                errors.append(f"stopped after {MAX_REPORTED_ERRORS} problems; fix these and check again")
            raise DatasetError(errors)


def _line_number(message: str) -> int:
    match = re.match(r"line (\d+)", message)
    return int(match.group(1)) if match else 0


def dataset_parse(path: Path, *, max_file_bytes: int, max_record_chars: int, privacy_unit: str = "",
                  drop_duplicates: bool = False, identifying_fields: Sequence[str] = ()) -> ParsedDataset:
    """Read a .jsonl/.json (JSON Lines) or .csv file of instruction/response records.

    max_file_bytes bounds the file size in bytes; max_record_chars bounds each record's
    instruction plus response, in characters (after stripping). A UTF-8 byte order mark is
    accepted. privacy_unit names the field (column) identifying each record's person: every record
    must have it (text or a whole number), kept as the record's "unit". Exact duplicates are
    listed in `duplicates` and kept, or left out with drop_duplicates. identifying_fields names the
    fields (columns) whose non-empty values (text or numbers) each record keeps as its "identity"
    {field: value}; a record may lack some or all of them (counted in `identity_missing`), but
    each must be in the CSV header, or in some JSONL record. Raises DatasetError listing up to
    MAX_REPORTED_ERRORS problems with line numbers.
    """
    privacy_unit = privacy_unit_check(privacy_unit)
    identifying_fields = identifying_fields_check(identifying_fields)
    path = Path(path)
    source_format = FORMAT_BY_EXTENSION.get(path.suffix.lower())
    if source_format is None:
        accepted = ", ".join(FORMAT_BY_EXTENSION)
        raise DatasetError(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}; use one of {accepted}")
    size = path.stat().st_size
    if size > max_file_bytes:
        raise DatasetError(f"{path.name} is {size:,} bytes; the limit is {max_file_bytes:,} bytes: split the file")
    text = _decode_utf8(path.read_bytes())
    if not text.strip():
        raise DatasetError(f"{path.name} is empty: expected records with fields {_ACCEPTED_PAIRS}")

    problems = _Problems()
    if source_format == "jsonl":
        rows, field_mapping = _jsonl_rows(text, problems)
    else:
        rows, field_mapping = _csv_rows(text, problems)
    if privacy_unit and source_format == "csv" and rows and all(privacy_unit not in row for _, row in rows):
        problems.add(f"line 1: the header has no {privacy_unit!r} column, the privacy unit you named; add it "
                     "(the person each record belongs to) or register the dataset without a privacy unit")
    for problem in identity_field_problems(rows, identifying_fields, source_format=source_format,
                                           field_mapping=field_mapping):
        problems.add(problem)
    records, duplicates = _validated_records(rows, field_mapping, max_record_chars, problems, privacy_unit,
                                             drop_duplicates, identifying_fields)
    problems.raise_if_any()
    if not records:
        raise DatasetError(f"{path.name} has no records: expected records with fields {_ACCEPTED_PAIRS}")
    identity_missing = sum("identity" not in record for record in records) if identifying_fields else 0
    return ParsedDataset(records=records, source_format=source_format, field_mapping=field_mapping,
                         privacy_unit=privacy_unit, duplicates=duplicates, duplicates_dropped=bool(drop_duplicates),
                         identifying_fields=identifying_fields, identity_missing=identity_missing)


def privacy_unit_check(name) -> str:
    """A privacy unit field name as given ("" for none), or a DatasetError saying what to fix."""
    if name is None or name == "":
        return ""
    if not is_field_name(name):
        raise DatasetError(f"privacy unit {name!r} must be the name of a field (printable text, up to 100 characters)")
    name = name.strip()
    if any(name in pair for pair in FIELD_PAIRS):
        raise DatasetError(f"privacy unit {name!r} is a text field; name the field that identifies the person "
                           "(e.g. patient_id)")
    return name


def identifying_fields_check(names) -> tuple[str, ...]:
    """Identifying field names as given, stripped, in order (() for none), or a DatasetError
    saying what to fix. Whether a name clashes with the file's text fields, or is in the file at
    all, is known once the file is read (privacy.dataset_identity.identity_field_problems)."""
    fields, problems = identifying_fields_named(names)
    if problems:
        raise DatasetError(problems)
    return fields


def _decode_utf8(data: bytes) -> str:
    """The text without a leading BOM; non-UTF-8 lines are reported with line and byte offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        problems = _Problems()
        offset = 0
        for line_number, line in enumerate(data.split(b"\n"), start=1):
            if problems.full:
                problems.truncated = True
                break
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                bad = line[error.start]
                problems.add(
                    f"line {line_number}: not valid UTF-8 (byte 0x{bad:02x} at byte offset {offset + error.start}); "
                    "save the file with UTF-8 encoding"
                )
            offset += len(line) + 1
        problems.raise_if_any()
        # Not reached: b"\n" is never part of a multi-byte sequence, so some line fails above.
        raise DatasetError("the file is not valid UTF-8; save it with UTF-8 encoding")
    return text.removeprefix("\ufeff")


def _pair_of(keys) -> tuple[str, str] | None:
    """The first accepted pair any of whose names is among keys."""
    return next((pair for pair in FIELD_PAIRS if pair[0] in keys or pair[1] in keys), None)


def _mapping(pair: tuple[str, str]) -> dict:
    return {"instruction": pair[0], "response": pair[1]}


def _jsonl_rows(text: str, problems: _Problems) -> tuple[list[tuple[int, dict]], dict]:
    """(line number, object) per non-blank line, and the field mapping the file uses."""
    rows: list[tuple[int, dict]] = []
    file_pair, file_pair_line = None, None
    # split("\n"), not splitlines(): U+2028 and friends are legal inside JSON strings.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if problems.full:
            problems.truncated = True
            break
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            hint = " (a JSON array is not accepted: write one object per line)" if line.lstrip().startswith("[") else ""
            problems.add(f"line {line_number}: not valid JSON ({error.msg} at column {error.colno}){hint}; "
                         'each line must be one JSON object like {"instruction": "...", "response": "..."}')
            continue
        if not isinstance(value, dict):
            problems.add(f"line {line_number}: is a JSON {type(value).__name__}, not an object; "
                         'write {"instruction": "...", "response": "..."}')
            continue
        pair = _pair_of(value)
        if pair is None:
            problems.add(f"line {line_number}: none of the accepted fields ({_ACCEPTED_PAIRS}); "
                         f"found {', '.join(map(repr, value)) or 'no keys'}")
            continue
        if file_pair is None:
            file_pair, file_pair_line = pair, line_number
        elif pair != file_pair:
            problems.add(f"line {line_number}: uses fields {pair[0]}/{pair[1]} but line {file_pair_line} uses "
                         f"{file_pair[0]}/{file_pair[1]}; use one pair of field names throughout the file")
            continue
        rows.append((line_number, value))
    return rows, _mapping(file_pair) if file_pair else {}


def _csv_rows(text: str, problems: _Problems) -> tuple[list[tuple[int, dict]], dict]:
    """(line the record starts on, {column: value}) per row, and the field mapping of the header."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, dict]] = []
    header: list[str] | None = None
    previous_end = 0
    try:
        for row in reader:
            line_number, previous_end = previous_end + 1, reader.line_num
            if problems.full:
                problems.truncated = True
                break
            if header is None:
                header = [column.strip() for column in row]
                continue
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                problems.add(f"line {line_number}: {len(row)} fields but the header has {len(header)}; "
                             "quote values that contain commas")
            else:
                rows.append((line_number, dict(zip(header, row))))
    except csv.Error as error:
        problems.add(f"line {previous_end + 1}: broken CSV quoting ({error}; detected on line {reader.line_num}); "
                     'enclose values in double quotes and double any quote inside them ("")')
    if header is None:
        return [], {}  # the quoting error on line 1 is reported
    pair = _pair_of(header)
    if pair is None:
        problems.add(f"line 1: the header has none of the accepted column pairs ({_ACCEPTED_PAIRS}); "
                     f"found {', '.join(map(repr, header)) or 'no columns'}")
        return [], {}
    for name in pair:
        if name not in header:
            problems.add(f"line 1: the header has {pair[1 - pair.index(name)]!r} but no {name!r} column; add it")
        elif header.count(name) > 1:
            problems.add(f"line 1: the header has column {name!r} more than once; keep one")
    return rows, _mapping(pair)


def _validated_records(rows, field_mapping: dict, max_record_chars: int, problems: _Problems, privacy_unit: str,
                       drop_duplicates: bool, identifying_fields: tuple[str, ...] = (),
                       ) -> tuple[list[dict], list[tuple[int, int]]]:
    records: list[dict] = []
    duplicates: list[tuple[int, int]] = []
    first_line_of: dict[tuple[str, str, str], int] = {}
    for line_number, row in rows:
        if problems.full:
            problems.truncated = True
            break
        record, ok = {}, True
        for target, source in field_mapping.items():
            value = row.get(source)
            problem = _field_problem(source, value)
            if problem:
                problems.add(f"line {line_number}: {problem}")
                ok = False
            else:
                record[target] = value.strip()
        if privacy_unit:
            unit, problem = _unit_value(privacy_unit, row.get(privacy_unit))
            if problem:
                problems.add(f"line {line_number}: {problem}")
                ok = False
            else:
                record["unit"] = unit
        identity, identity_problems = identity_of(row, identifying_fields)
        for problem in identity_problems:
            problems.add(f"line {line_number}: {problem}")
            ok = False
        if identity:
            record["identity"] = identity
        if not ok:
            continue
        length = len(record["instruction"]) + len(record["response"])
        if length > max_record_chars:
            problems.add(f"line {line_number}: the record is {length:,} characters (instruction + response); "
                         f"the limit is {max_record_chars:,}: shorten or split it")
            continue
        # The identity is left out of the key: a duplicate is the same text trained on twice, and training
        # never reads the identity. A dropped duplicate's identity goes with it; the first record's stays.
        key = (record.get("unit", ""), " ".join(record["instruction"].split()), " ".join(record["response"].split()))
        if key in first_line_of:
            duplicates.append((line_number, first_line_of[key]))
            if drop_duplicates:
                continue
        else:
            first_line_of[key] = line_number
        records.append(record)
    return records, duplicates


def _unit_value(name: str, value) -> tuple[str, str | None]:
    """(the unit as text, None) or ("", what is wrong with it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    if isinstance(value, str) and value.strip():
        return value.strip(), None
    if value is None:
        return "", f"missing privacy unit field {name!r}; every record needs the person it belongs to"
    return "", f"privacy unit field {name!r} must be text or a whole number, not {value!r}"


def _field_problem(name: str, value) -> str | None:
    if value is None:
        return f"missing field {name!r}; every record needs it"
    if not isinstance(value, str):
        kind = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
        return f"field {name!r} is {kind.get(type(value), type(value).__name__)}, not text; write it as a string"
    if not value.strip():
        return f"field {name!r} is empty; write the text or remove the record"
    return None


def dataset_split(records: Sequence, *, heldout_fraction: float, seed: int) -> tuple[list, list]:
    """Split records into (train, heldout) by a shuffle that depends only on seed.

    The shuffle is of privacy units: records carrying a "unit" go to one side with all their
    unit's records (no person is both trained on and held out); otherwise each record is its own
    unit. heldout gets round(n * heldout_fraction) units (Python's round: halves to even), at
    least 1 when n >= 2 and the fraction is positive, and train is never empty. Both keep the
    records' original order. The fraction must be within [0, 0.5].
    """
    is_number = isinstance(heldout_fraction, int | float) and not isinstance(heldout_fraction, bool)
    if not is_number or not 0 <= heldout_fraction <= 0.5:
        raise DatasetError(f"held-out fraction {heldout_fraction!r} must be a number from 0 to 0.5")
    if len(records) == 0:
        raise DatasetError("no records to split")
    units = [record["unit"] if isinstance(record, dict) and "unit" in record else index
             for index, record in enumerate(records)]
    distinct = list(dict.fromkeys(units))  # in order of first appearance
    n = len(distinct)
    heldout_count = round(n * heldout_fraction)
    if heldout_fraction > 0 and n >= 2:
        heldout_count = max(1, heldout_count)
    heldout_count = min(heldout_count, n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    heldout_units = {distinct[index] for index in order[:heldout_count]}
    train = [record for record, unit in zip(records, units) if unit not in heldout_units]
    heldout = [record for record, unit in zip(records, units) if unit in heldout_units]
    return train, heldout


def default_delta(n: int) -> float:
    """The largest power of ten strictly below 1/n, for n records: 10^-d where d is the number of
    decimal digits of n (n=50 -> 1e-2, n=1000 -> 1e-4, n=1500 -> 1e-4).

    delta is the probability that the (epsilon, delta) guarantee fails outright; a delta of 1/n
    would allow publishing one record in full, so it must be well below 1/n.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of records, not {n!r}")
    return float(f"1e-{len(str(n))}")


def dataset_write_jsonl(path: Path, records: Sequence[dict]) -> None:
    """Write records as UTF-8 JSON Lines, one object per line, non-ASCII kept as is."""
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
