"""Registering a private dataset: validate, split, store the files, create the dataset and its budget."""
import hashlib
import math
import random
import secrets
import shutil
import unicodedata
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from privacy.datasets import DatasetError, dataset_parse, dataset_split, dataset_write_jsonl, default_delta
from privacy.models import EPSILON_DECIMAL_PLACES, AuditEntry, PrivacyBudget, PrivateDataset
from privacy.selectors import AUDIT_CANARIES_FILE, CANARIES_FILE
from privacy.pii import pii_summary
from privacy.canary import audit_canary_records, canary_records

NAME_MAX_LENGTH = 200
EPSILON_LIMIT_BOUND = Decimal(10) ** 6  # the column holds 12 digits, 6 of them decimals
MAX_CANARIES = 1000
MAX_CANARY_REPEATS = 100
MAX_AUDIT_CANARIES = 10_000
# With a privacy unit an audit canary is a person of its own with this many copies of its record
# (a patient with several visits): memorable enough for a model that does not protect persons to
# give it away, and still one unit, so the audit tests the per-person epsilon. Without a unit each
# canary is one record: copies would be a group of records, which epsilon per record does not cover.
AUDIT_RECORDS_PER_UNIT = 4


class BudgetConfigError(ValueError):
    """An epsilon limit, delta or accountant that a budget cannot have."""


def dataset_register(
    *,
    owner,
    name: str,
    source_path: Path,
    epsilon_limit,
    delta: float | None = None,
    accountant: str = "prv",
    heldout_fraction: float = 0.1,
    split_seed: int = 0,
    canaries: int = 0,
    canary_repeats: int = 1,
    allow_nonprivate_baselines: bool = False,
    privacy_unit: str = "",
    drop_duplicates: bool = False,
    identifying_fields: Sequence[str] = (),
    audit_canaries: int = 0,
) -> PrivateDataset:
    """Register the file at source_path as a private dataset with its privacy budget.

    epsilon_limit (dimensionless; Decimal, str or float) is what all DP jobs on the dataset may
    spend together. delta, a probability, defaults to default_delta(train records) and must be
    below 1/train records. The original file and its train.jsonl / heldout.jsonl splits are
    stored under KSG_PRIVATE_DIR/datasets/<slug>-<random>/. Raises DatasetError or
    BudgetConfigError; on any failure nothing is left behind, neither rows nor files.

    canaries > 0 plants that many canary records (a fresh random secret each, in a fixed
    template: privacy.canary) into the training split, `canary_repeats` copies of each at
    random positions, marked {"canary": true}; their secrets are kept in canaries.json beside
    the splits, for the evaluation's exposure measurement. Canaries count as training records.
    allow_nonprivate_baselines lets the `nonprivate` baseline (no DP) train on the records.

    audit_canaries > 0 draws that many audit canaries for the one-run privacy audit
    (evaluation.audit): each goes into the training split (once; with a privacy unit as a person
    of its own with AUDIT_RECORDS_PER_UNIT records) by a fair coin flip from the
    operating system's CSPRNG; all of them with their flips are kept in audit_canaries.jsonl beside
    the splits (client side), marked {"canary": true, "audit": true} in the training split.

    privacy_unit names the field identifying each record's person (privacy.datasets): the split
    keeps each person on one side, DP jobs protect persons, each canary is a person of its own,
    and the default delta is below 1/(training persons). Exact duplicates are counted (kept, or
    left out with drop_duplicates) and never refuse the file.

    identifying_fields names the fields naming the person a record is about (`patient_name`,
    `email`): each record of train.jsonl / heldout.jsonl keeps their values as its "identity"
    {field: value} (client side, like the records), for the evaluation's name-reconstruction
    attack; canaries have none.
    """
    name = _validated_name(name)
    limit = _validated_epsilon_limit(epsilon_limit)
    if accountant not in PrivacyBudget.Accountant.values:
        raise BudgetConfigError(
            f"unknown accountant {accountant!r}; choose one of {', '.join(PrivacyBudget.Accountant.values)}"
        )
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or not -(2**63) <= split_seed < 2**63:
        raise DatasetError(f"split seed must be a whole number (64-bit), not {split_seed!r}")
    source_path = Path(source_path)
    if not source_path.is_file():
        raise DatasetError(f"{source_path}: no such file")
    parsed = dataset_parse(
        source_path, max_file_bytes=settings.KSG_MAX_DATASET_BYTES, max_record_chars=settings.KSG_MAX_RECORD_CHARS,
        privacy_unit=privacy_unit, drop_duplicates=drop_duplicates, identifying_fields=identifying_fields,
    )
    train, heldout = dataset_split(parsed.records, heldout_fraction=heldout_fraction, seed=split_seed)
    canary_rows = _canaries(canaries, canary_repeats)
    units = bool(parsed.privacy_unit)
    train = _planted(train, canary_rows, canary_repeats, units=units, unit_prefix="canary", marks={"canary": True})
    audit_rows = _audit_canaries(audit_canaries)
    # each included audit canary once, or with a privacy unit as a person of AUDIT_RECORDS_PER_UNIT records
    train = _planted(train, [row for row in audit_rows if row["included"]], AUDIT_RECORDS_PER_UNIT if units else 1,
                     units=units, unit_prefix="audit", marks={"canary": True, "audit": True})
    train_units = len({record["unit"] for record in train}) if parsed.privacy_unit else len(train)
    delta = _validated_delta(delta, train_count=train_units, unit=parsed.privacy_unit or "record")

    private_dir = Path(settings.KSG_PRIVATE_DIR)
    slug = slugify(name)[:60].strip("-") or "dataset"
    directory = private_dir / "datasets" / f"{slug}-{secrets.token_hex(4)}"
    directory.mkdir(parents=True)
    # Files first, then the rows in a short transaction: on SQLite a transaction holds the write
    # lock from its start, and parsing or copying a 200 MB file must not block the workers.
    try:
        original = directory / f"original.{parsed.source_format}"
        shutil.copyfile(source_path, original)
        sha256, size_bytes = _file_digest(original)  # of the stored copy, byte for byte
        dataset_write_jsonl(directory / "train.jsonl", train)
        dataset_write_jsonl(directory / "heldout.jsonl", heldout)
        if canary_rows:
            dataset_write_jsonl(directory / CANARIES_FILE, canary_rows)
        if audit_rows:
            dataset_write_jsonl(directory / AUDIT_CANARIES_FILE, audit_rows)
        summary = pii_summary(f"{record['instruction']}\n{record['response']}" for record in parsed.records)
        with transaction.atomic():
            dataset = PrivateDataset.objects.create(
                name=name, owner=owner, path=str(directory.relative_to(private_dir)),
                source_format=parsed.source_format, field_mapping=parsed.field_mapping, sha256=sha256,
                size_bytes=size_bytes, record_count=len(parsed.records), train_count=len(train),
                heldout_count=len(heldout), split_seed=split_seed, pii_summary=summary,
                canary_count=len(canary_rows), canary_repeats=canary_repeats if canary_rows else 0,
                allow_nonprivate_baselines=bool(allow_nonprivate_baselines), privacy_unit=parsed.privacy_unit,
                train_units=train_units, duplicate_records=len(parsed.duplicates),
                duplicates_dropped=parsed.duplicates_dropped, identifying_fields=list(parsed.identifying_fields),
                audit_canary_count=len(audit_rows),
            )
            PrivacyBudget.objects.create(dataset=dataset, epsilon_limit=limit, delta=delta, accountant=accountant)
            AuditEntry.objects.create(
                action=AuditEntry.Action.DATASET_REGISTERED, actor=owner, dataset=dataset,
                details={"sha256": sha256, "records": len(parsed.records), "epsilon_limit": str(limit), "delta": delta,
                         "accountant": accountant, "canaries": len(canary_rows),
                         "audit_canaries": len(audit_rows),
                         "audit_canaries_included": sum(row["included"] for row in audit_rows),
                         "allow_nonprivate_baselines": bool(allow_nonprivate_baselines),
                         "privacy_unit": parsed.privacy_unit or "record", "train_units": train_units,
                         "duplicates": len(parsed.duplicates), "duplicates_dropped": parsed.duplicates_dropped,
                         "identifying_fields": list(parsed.identifying_fields),
                         "identity_missing": parsed.identity_missing},
            )
    except IntegrityError as error:
        shutil.rmtree(directory, ignore_errors=True)
        if PrivateDataset.objects.filter(name=name).exists():
            raise DatasetError(f"a dataset named {name!r} already exists; choose another name") from error
        raise
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return dataset


def _canaries(count, repeats) -> list[dict]:
    """`count` canary records with secrets from the operating system's CSPRNG (no seed anyone
    could know), or [] for 0."""
    for value, what, bound in ((count, "canary count", MAX_CANARIES), (repeats, "canary repeats", MAX_CANARY_REPEATS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= bound:
            raise DatasetError(f"{what} must be a whole number from 0 to {bound}, not {value!r}")
    if count and repeats < 1:
        raise DatasetError("canary repeats must be at least 1 when canaries are planted")
    return canary_records(count, seed=secrets.randbits(64)) if count else []


def _planted(train: list[dict], rows: list[dict], copies: int, *, units: bool, unit_prefix: str,
             marks: dict) -> list[dict]:
    """The training split with `copies` copies of each row ({"instruction", "response"}, with
    `marks` added) inserted at random positions; with privacy units, each row (all its copies) is
    a unit of its own, "<unit_prefix>-<i>", never a real unit's name."""
    if not rows:
        return train
    rng = random.Random(secrets.randbits(64))
    planted = list(train)
    taken = {record["unit"] for record in train} if units else set()
    for index, row in enumerate(rows, start=1):
        record = {"instruction": row["instruction"], "response": row["response"], **marks}
        if units:
            unit = f"{unit_prefix}-{index}"
            while unit in taken:  # a real unit with that name: the planted one's must differ
                unit = "_" + unit
            record["unit"] = unit
        for _ in range(copies):
            planted.insert(rng.randint(0, len(planted)), dict(record))
    return planted


def _audit_canaries(count) -> list[dict]:
    """`count` audit canaries (privacy.canary.audit_canary_records) with their coin flips drawn
    from a seed of the operating system's CSPRNG, or [] for 0."""
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_AUDIT_CANARIES:
        raise DatasetError(f"audit canaries must be a whole number from 0 to {MAX_AUDIT_CANARIES}, not {count!r}")
    if count == 1:
        raise DatasetError("audit canaries: 1 cannot be audited (the audit compares some trained on with some left "
                           "out); draw 0, or 2 or more (128 or more recommended)")
    return audit_canary_records(count, seed=secrets.randbits(64)) if count else []


def _validated_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise DatasetError("the dataset name is empty; give it a name")
    name = name.strip()
    if len(name) > NAME_MAX_LENGTH:
        raise DatasetError(f"the dataset name is {len(name)} characters; the limit is {NAME_MAX_LENGTH}")
    if any(unicodedata.category(character) == "Cc" for character in name):
        raise DatasetError("the dataset name contains control characters (e.g. NUL, tab or newline); remove them")
    if PrivateDataset.objects.filter(name=name).exists():
        raise DatasetError(f"a dataset named {name!r} already exists; choose another name")
    return name


def _validated_epsilon_limit(value) -> Decimal:
    """The limit as a Decimal; floats are read by their shortest repr (0.1 is 0.1, not 0.1000000000000000055)."""
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int | float):
        raise BudgetConfigError(f"epsilon limit must be a number, not {value!r}")
    try:
        limit = Decimal(str(value).strip())
    except InvalidOperation:
        raise BudgetConfigError(f"epsilon limit must be a number, not {value!r}") from None
    if not limit.is_finite() or limit <= 0:
        raise BudgetConfigError(f"epsilon limit must be a finite number above 0, not {value!r}")
    if limit >= EPSILON_LIMIT_BOUND:
        raise BudgetConfigError(f"epsilon limit {value!r} is too large; it must be below {EPSILON_LIMIT_BOUND:,}")
    if limit.normalize().as_tuple().exponent < -EPSILON_DECIMAL_PLACES:
        raise BudgetConfigError(
            f"epsilon limit {value!r} has more than {EPSILON_DECIMAL_PLACES} decimal places; round it"
        )
    return limit


def _validated_delta(delta, *, train_count: int, unit: str = "record") -> float:
    """delta, a probability, strictly below 1/train_count (training units: records, or persons
    where the dataset names its privacy unit); default_delta(train_count) when None."""
    if delta is None:
        return default_delta(train_count)
    if isinstance(delta, bool) or not isinstance(delta, int | float | Decimal):
        raise BudgetConfigError(f"delta must be a number, not {delta!r}")
    delta = float(delta)
    if not math.isfinite(delta) or not 0 < delta < 1:
        raise BudgetConfigError(f"delta must be a probability strictly between 0 and 1, not {delta!r}")
    if delta >= 1 / train_count:
        raise BudgetConfigError(
            f"delta {delta:g} is not below 1/n = {1 / train_count:.3g} for n = {train_count} training "
            f"{'records' if unit == 'record' else f'units ({unit})'}: "
            "with delta >= 1/n a mechanism could publish a whole record and still meet the guarantee; "
            f"use a smaller delta (the default for this dataset is {default_delta(train_count):g})"
        )
    return delta


def _file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of the file, read in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
