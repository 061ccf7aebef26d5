"""Finding personal information in text: names, emails, phone numbers, dates and identifiers.

Used on private datasets at registration (a summary of what they hold), and on anything derived
from them before it leaves the client: synthetic instructions in the filter stage, model outputs.

Rules, not a model (no NER model is available offline): regular expressions for the structured
kinds, and for names Faker's bundled US first and last names plus titles (Dr., Mr., ...).
Where spans overlap, the earlier kind in KINDS wins, so "account 1234567890" is an id, not a phone.
"""
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("email", "id", "phone", "date", "name")


@dataclass(frozen=True)
class PiiSpan:
    kind: str  # one of KINDS
    start: int  # character offsets into the text, end exclusive
    end: int
    text: str


# --- structured kinds ------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")

_ID_LABEL = (
    r"(?i:\b(?:MRN|medical\s+record(?:\s+(?:number|no\.?|\#))?|(?:patient|member|customer|client)\s+"
    r"(?:id|number|no\.?|\#)|(?:account|acct\.?)(?:\s+(?:number|no\.?|\#))?|(?:policy|card|routing)\s+"
    r"(?:number|no\.?|\#)))|\bID\b"
)
_ID_PATTERNS = (
    # the value after a label: "MRN 12345678", "account no. 1234 5678 90", "member ID: AB-123456"
    re.compile(
        rf"(?:{_ID_LABEL})[\s:#.]*(?:(?i:is|ending\s+in)\s+)?(?P<value>(?:[A-Z]{{1,4}}-?)?\d+(?:[ -]\d{{3,}})*)"
    ),
    re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"),  # US social security number
    re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),  # IBAN
    re.compile(r"(?<![\w$€£.,])(?![2-9]\d{9}(?!\d))\d{9,}(?!\d|[.,]\d)"),  # long bare numbers
)
_ID_MIN_DIGITS = 4

_PHONE_EXTENSION = r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?"
_PHONE_PATTERNS = (
    # (555) 123-4567, 555-123-4567, 555.123.4567, +1-555-123-4567x89, 001-555-123-4567
    re.compile(
        r"(?<![\w+])(?:(?:\+?1|001)[\s.-]?)?(?:\(\d{3}\)[\s.-]?|\d{3}[\s.-])\d{3}[\s.-]\d{4}" + _PHONE_EXTENSION + r"\b"
    ),
    # +44 20 7946 0958, +33 (0)1 23 45 67 89
    re.compile(rf"(?<![\w+])\+\d{{1,3}}(?:[\s.-]?\(?\d{{1,5}}\)?){{1,6}}{_PHONE_EXTENSION}(?!\d)"),
    # 5551234567: ten bare digits shaped like a North American number
    re.compile(r"(?<![\w$€£.,])[2-9]\d{9}(?!\d|[.,]\d)"),
)
_PHONE_DIGITS = range(7, 16)  # E.164 numbers have at most 15 digits

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_DATE_PATTERNS = (
    re.compile(r"\b\d{4}([-/])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])\b"),  # 2024-03-01
    re.compile(r"\b(\d{1,2})([/.-])(\d{1,2})\2(?:\d{4}|\d{2})\b(?![.-]\d)"),  # 03/01/2024, 1.3.24
    re.compile(rf"\b{_MONTH}\s+{_DAY}(?:,?\s+\d{{4}})?\b(?!:)"),  # March 1, 2024; Mar. 1st
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?(?![\w])"),  # 1 March 2024
)

# --- names -----------------------------------------------------------------------------------
# A capitalised word: Sarah, McDonald, O'Brien, Smith-Jones (never a single letter or ALL CAPS).
_LOWER = "a-zß-öø-ÿ"
_UPPER = "A-ZÀ-ÖØ-Þ"
_TOKEN = re.compile(
    rf"(?<![\w'’])[{_UPPER}](?:[{_LOWER}]+|['’](?=[{_UPPER}]))"  # a capital, then lowercase or "'" (O'Brien)
    rf"(?:[{_UPPER}][{_LOWER}]+)*(?:-[{_UPPER}][{_LOWER}]+)?(?![\w])"  # more parts: McDonald, Smith-Jones
)
_TITLE_GAP = re.compile(r"\.?[ \t]{1,3}")
_NAME_GAP = re.compile(rf"[ \t]{{1,3}}(?:[{_UPPER}]\.[ \t]{{1,3}})?")  # "John Smith", "John Q. Smith"
_TITLES = frozenset({"Dr", "Doctor", "Mr", "Mrs", "Ms", "Mx", "Miss", "Prof", "Professor"})
# First names that are also ordinary words; they count only before a known surname or after a title.
_AMBIGUOUS_FIRST_NAMES = frozenset("""
    Will May June April August Grace Faith Hope Joy Mark Bill Rose Dawn Summer Autumn Amber Crystal
    Diamond Destiny Angel Chase Christian Drew Frank Grant Guy Hunter Holly Jade Jean Lance Max Melody
    Misty Penny Raven Ray Sandy Savannah Sierra Virginia Jordan Austin Dakota Sydney Madison Ruby Iris
    Ivy Lily Miles Art Rich Pat Sue Earl Dean Don Gene Glen Cole Warren Parker Taylor Tanner Mercedes
    Kent Carol Brandy Dale Bob Jack Jay Bailey Cassidy Lee Ross Wayne Shelby Spencer Whitney Stanley
    Cameron Mason Logan Preston Trinity Unique Precious Sunny Star
""".split())
# Capitalised words that follow a first name without being a surname ("Thanks Sarah Please ...").
_NOT_SURNAMES = frozenset("""
    The An And But Or So Nor Yet My Our Your His Her Their Its We He She They It This That These Those
    Is Are Was Were Be Been Has Have Had Do Does Did Can Could Would Should Will May Might Must Shall
    If When What Why How Where Who Whom Which Whose In On At For From To With By Of As About After
    Before Since Until Then Than Also Just Not Here There Today Tomorrow Yesterday Tonight
    Thanks Thank Please Regards Best Sincerely Cheers Kind Warm Hi Hello Hey Dear Yes No Okay Ok Sorry
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April June July
    August September October November December Street Avenue Road Lane Drive Boulevard Court Place
    Suite Apt Hospital Clinic Center Centre Bank Inc Ltd Group Company Corp University College School
    Doctor Patient Sir Madam Team Office Department Account Street Square Park
""".split())


@functools.cache
def _known_names() -> tuple[frozenset, frozenset]:
    """Faker's en_US first names and last names, loaded on first use (about 1,700 names)."""
    from faker.providers.person.en_US import Provider  # deferred: faker's name lists load on the first scan, once

    return frozenset(Provider.first_names) | _AMBIGUOUS_FIRST_NAMES, frozenset(Provider.last_names)


def _surname_end(text: str, tokens: list, index: int, *, max_extra: int) -> int:
    """Index of the last token of the name starting at tokens[index] (middle and last names)."""
    last = index
    while (
        last + 1 < len(tokens) and last - index < max_extra
        and _NAME_GAP.fullmatch(text, tokens[last][1], tokens[last + 1][0])
        and tokens[last + 1][2] not in _NOT_SURNAMES
    ):
        last += 1
    return last


def _name_spans(text: str) -> list[tuple[int, int]]:
    first_names, last_names = _known_names()
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
    spans = []
    i = 0
    while i < len(tokens):
        start, end, word = tokens[i]
        if (
            word in _TITLES and i + 1 < len(tokens)
            and _TITLE_GAP.fullmatch(text, end, tokens[i + 1][0]) and tokens[i + 1][2] not in _NOT_SURNAMES
        ):
            last = _surname_end(text, tokens, i + 1, max_extra=1)
            spans.append((tokens[i + 1][0], tokens[last][1]))
            i = last + 1
            continue
        if word in first_names:
            last = _surname_end(text, tokens, i, max_extra=2)
            if word not in _AMBIGUOUS_FIRST_NAMES or (last > i and tokens[last][2] in last_names):
                spans.append((start, tokens[last][1]))
                i = last + 1
                continue
        i += 1
    return spans


# --- the public API --------------------------------------------------------------------------
def _candidates(text: str):
    """(kind, start, end) of every match, in the order of KINDS."""
    for match in _EMAIL.finditer(text):
        yield "email", match.start(), match.end()
    for pattern in _ID_PATTERNS:
        for match in pattern.finditer(text):
            group = "value" if "value" in pattern.groupindex else 0
            if sum(c.isdigit() for c in match.group(group)) >= _ID_MIN_DIGITS:
                yield "id", match.start(group), match.end(group)
    for pattern in _PHONE_PATTERNS:
        for match in pattern.finditer(text):
            if sum(c.isdigit() for c in match.group()) in _PHONE_DIGITS:
                yield "phone", match.start(), match.end()
    for index, pattern in enumerate(_DATE_PATTERNS):
        for match in pattern.finditer(text):
            if index == 1 and min(int(match.group(1)), int(match.group(3))) > 12:
                continue  # neither 03/01 nor 01/03 reading is a month
            yield "date", match.start(), match.end()
    for start, end in _name_spans(text):
        yield "name", start, end


def pii_find(text: str) -> list[PiiSpan]:
    """Spans of personal information in text, sorted by start; spans never overlap."""
    taken: list[tuple[int, int]] = []
    spans = []
    for kind, start, end in _candidates(text):
        if any(start < taken_end and taken_start < end for taken_start, taken_end in taken):
            continue
        taken.append((start, end))
        spans.append(PiiSpan(kind=kind, start=start, end=end, text=text[start:end]))
    return sorted(spans, key=lambda span: span.start)


def pii_summary(texts: Iterable[str]) -> dict[str, int]:
    """Counts of spans per kind over texts (every kind present, 0 when none), and
    "records_with_pii": how many texts have at least one span."""
    summary = dict.fromkeys(("name", "email", "phone", "date", "id"), 0) | {"records_with_pii": 0}
    for text in texts:
        spans = pii_find(text)
        for span in spans:
            summary[span.kind] += 1
        summary["records_with_pii"] += bool(spans)
    return summary


def pii_redact(text: str, *, spans: list[PiiSpan] | None = None) -> str:
    """text with each span replaced by its kind in brackets: "[NAME]", "[EMAIL]", ..."""
    spans = pii_find(text) if spans is None else spans
    parts, position = [], 0
    for span in sorted(spans, key=lambda span: span.start):
        parts += [text[position:span.start], f"[{span.kind.upper()}]"]
        position = span.end
    return "".join(parts) + text[position:]


def pii_recall(items: Iterable[tuple[str, dict[str, list[str]]]]) -> dict[str, dict[str, float | int]]:
    """The detector's recall against known planted values: per kind, every whole-word occurrence
    of a planted value in its text (longest values first, so "Ann Lee" is one occurrence, not
    also "Ann" and "Lee"), how many lie inside a pii_find span of that kind, and the fraction.
    `items` are (text, {kind: [values planted in it]})."""
    counts = {kind: {"planted": 0, "found": 0} for kind in KINDS}
    for text, planted in items:
        spans = pii_find(text)
        for kind, values in planted.items():
            taken: list[tuple[int, int]] = []
            for value in sorted(set(values), key=len, reverse=True):
                for match in re.finditer(rf"(?<![\w@.-]){re.escape(value)}(?![\w@-])", text):
                    start, end = match.span()
                    if any(start < t_end and t_start < end for t_start, t_end in taken):
                        continue
                    taken.append((start, end))
                    counts[kind]["planted"] += 1
                    counts[kind]["found"] += any(span.kind == kind and span.start <= start and end <= span.end
                                                 for span in spans)
    return {kind: {**c, "recall": c["found"] / c["planted"] if c["planted"] else None} for kind, c in counts.items()}
