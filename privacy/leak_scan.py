"""Finding private text where it must not be: any SPAN_WORDS-word span of a private record, and
each identifying value (a full name, an email, a phone number, an id, a date), in files or text.

The boundary test (tests/privacy/test_boundary_scan.py) walks every file the server side can read
after full runs and fails on a finding; the evaluate stage (client side: it holds the records)
scans the run's server-readable artifacts, the synthetic data among them, and reports what it
finds with the span masked (evaluation.stage).

Text is compared as lower-case word sequences (\\w+ runs), after undoing JSON's escapes, so a record
is found whatever the punctuation, case, line breaks or JSON quoting around it. An identifying
value counts when it is identifying on its own: two words or more ("Ada Lovelace"), or one that
holds a digit or an @ (a phone, an MRN, an email); a lone first or last name is not scanned for,
since every vocabulary and every text in the domain has common names in it.
No Django here: plain data in, plain data out.
"""
import re
from dataclasses import dataclass
from pathlib import Path

from .pii import pii_find, pii_find_many

SPAN_WORDS = 8
TEXT_FIELDS = ("instruction", "response")
CHUNK_BYTES = 16 << 20  # a large file (model weights) is read in chunks that overlap by CHUNK_OVERLAP
CHUNK_OVERLAP = 1 << 14
_WORD = re.compile(r"\w+")
_JSON_UNICODE = re.compile(r"\\u([0-9a-fA-F]{4})")
_JSON_ESCAPE = re.compile(r"\\[nrtbf\"\\/]")


@dataclass(frozen=True)
class LeakFinding:
    """Private text found in a file: `text` (unmasked; it is private) from private record `record`
    (its split and position, e.g. "train[12]"); `kind` "span" or "identifier"; `records` how many
    private records contain that text; `masked` the text with every word but its first letter
    starred."""
    file: str
    kind: str
    record: str
    text: str
    masked: str
    records: int


def text_words(text: str) -> list[str]:
    """The lower-case words of a text, JSON escapes (\\n, \\", \\u00e9) undone first."""
    text = _JSON_UNICODE.sub(lambda match: chr(int(match.group(1), 16)), text)
    return _WORD.findall(_JSON_ESCAPE.sub(" ", text).lower())


def span_mask(text: str) -> str:
    """Each word as its first letter and a star per further letter: "Ada Lovelace" -> "A** L*******"."""
    return " ".join(word[0] + "*" * (len(word) - 1) for word in text.split())


def is_identifying(value: str) -> bool:
    """Whether a value singles a person out on its own (see the module docstring)."""
    words = text_words(value)
    return len(words) >= 2 or any(char.isdigit() or char == "@" for char in value)


def record_identifiers(record: dict) -> list[str]:
    """The identifying values of one record: what the PII detector finds in its text fields,
    every other string field (a `patient_id`, a canary's secret) and every value of its
    "identity" (the dataset's identifying fields: a `patient_name`, an `email`; privacy.datasets),
    each when identifying on its own."""
    values = [span.text for field in TEXT_FIELDS if isinstance(record.get(field), str)
              for span in pii_find(record[field])]
    values += [value for key, value in record.items() if key not in TEXT_FIELDS and isinstance(value, str)]
    identity = record.get("identity")
    values += [value for value in identity.values() if isinstance(value, str)] if isinstance(identity, dict) else []
    return [value for value in dict.fromkeys(v.strip() for v in values) if value and is_identifying(value)]


class PrivateTextIndex:
    """Every SPAN_WORDS-word span of the records' text fields and every identifying value, each
    with the records it comes from; `scan(text)` finds them in a text."""

    def __init__(self, splits: dict[str, list[dict]], *, identifiers: dict[str, list[str]] | None = None,
                 span_words: int = SPAN_WORDS):
        """splits: split name -> records; identifiers: record label ("train[3]") -> extra
        identifying values (e.g. what a demo generator planted), added to record_identifiers."""
        self.span_words = span_words
        self.spans: dict[str, set[str]] = {}
        self.values: dict[str, dict[tuple[str, ...], set[str]]] = {}  # first word -> words -> labels
        # every text field scanned in one batched pass first: record_identifiers then finds its spans
        # in the detector's cache (privacy.pii)
        pii_find_many([record[field] for records in splits.values() for record in records
                       for field in TEXT_FIELDS if isinstance(record.get(field), str)])
        for split, records in splits.items():
            for position, record in enumerate(records):
                label = f"{split}[{position}]"
                for field in TEXT_FIELDS:
                    words = text_words(record.get(field) or "")
                    for start in range(len(words) - span_words + 1):
                        self.spans.setdefault(" ".join(words[start: start + span_words]), set()).add(label)
                extra = (identifiers or {}).get(label, [])
                for value in record_identifiers(record) + [v for v in extra if is_identifying(v)]:
                    self._add_value(value, label)

    def _add_value(self, value: str, label: str) -> None:
        words = tuple(text_words(value))
        if words:
            self.values.setdefault(words[0], {}).setdefault(words, set()).add(label)

    def scan(self, text: str, *, file: str = "") -> list[LeakFinding]:
        """The private spans and identifying values in `text` (one finding per record for spans,
        per record and value for identifiers)."""
        words = text_words(text)
        found: dict[tuple, LeakFinding] = {}
        for start in range(len(words)):
            span = " ".join(words[start: start + self.span_words])
            labels = self.spans.get(span) if start + self.span_words <= len(words) else None
            if labels:
                self._found(found, file, "span", span, labels)
            for value, value_labels in self.values.get(words[start], {}).items():
                if tuple(words[start: start + len(value)]) == value:
                    self._found(found, file, "identifier", " ".join(value), value_labels)
        return list(found.values())

    @staticmethod
    def _found(found: dict, file: str, kind: str, text: str, labels: set[str]) -> None:
        for label in sorted(labels):
            found.setdefault(_finding_key(kind, label, text), LeakFinding(file=file, kind=kind, record=label, text=text,
                                                        masked=span_mask(text), records=len(labels)))


def _finding_key(kind: str, record: str, text: str) -> tuple:
    """One finding per record for spans (a copied record overlaps many windows), one per value
    for identifiers."""
    return (kind, record) if kind == "span" else (kind, record, text)


def file_scan(index: PrivateTextIndex, path: Path, *, name: str | None = None) -> list[LeakFinding]:
    """The findings in one file of any kind (text or binary, decoded as UTF-8 with replacement),
    read in overlapping chunks so a large file costs bounded memory."""
    name = name or str(path)
    found: dict[tuple, LeakFinding] = {}
    with open(path, "rb") as handle:
        tail = b""
        while chunk := handle.read(CHUNK_BYTES):
            for finding in index.scan((tail + chunk).decode("utf-8", errors="replace"), file=name):
                found.setdefault(_finding_key(finding.kind, finding.record, finding.text), finding)
            tail = chunk[-CHUNK_OVERLAP:]
    return list(found.values())


def directories_scan(index: PrivateTextIndex, roots: list[Path]) -> tuple[list[LeakFinding], int]:
    """(findings, files scanned) over every regular file under each root, whatever its name or
    type; a file is named by its path."""
    findings, files = [], 0
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.is_symlink():
                files += 1
                findings += file_scan(index, path)
    return findings, files
