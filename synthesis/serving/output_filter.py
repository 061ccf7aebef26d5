"""The PII output filter: the synthesis stage's detector (privacy.pii) on every completion before
it leaves. Mode "mask" replaces each span by its kind ([NAME], [EMAIL], ...); "refuse" withholds
an output that has any. With low_confidence="withhold" (KSG_SERVE_PII_LOW_CONFIDENCE), an output
holding a name the detector is unsure of (score below CONFIDENT_SCORE) is withheld, not masked:
where the detector doubts, part of the name may have gone unnoticed.

A stream is filtered as it goes, a sentence at a time: text is sent once its sentence has ended
and at least HOLD_BACK_WORDS words follow (a name is only recognisable once its last word is
there), and the detector (its NER model included) runs once per sentence, not per token, and not
at all for sentences with no digit, "@" or capitalised word that could be a name (no span can
start there). A span is masked wherever it overlaps what is sent, so no detected character leaves
unmasked.
"""
import re
from collections import Counter
from dataclasses import dataclass, field

from privacy.pii import CONFIDENT_SCORE, PiiSpan, pii_find, pii_possible

HOLD_BACK_WORDS = 4  # a title and up to three name words
LOW_CONFIDENCE_MODES = ("mask", "withhold")
REFUSAL = "[withheld: the answer contained personal data]"
UNSURE_REFUSAL = "[withheld: the answer may contain a person's name]"
_SENTENCE_END = re.compile(r"[.!?:;](?=\s)|\n")


def _unsure(spans: list[PiiSpan]) -> bool:
    """Whether a span is a name the detector is unsure of."""
    return any(span.kind == "name" and span.score < CONFIDENT_SCORE for span in spans)


@dataclass(frozen=True)
class FilteredText:
    text: str
    spans: dict[str, int] = field(default_factory=dict)  # masked spans per kind
    refused: bool = False
    refusal: str = REFUSAL  # what is sent instead, when refused

    @property
    def filtered(self) -> bool:
        return bool(self.spans)


def output_filter(text: str, *, mode: str, low_confidence: str = "mask") -> FilteredText:
    """A whole output through the PII filter: masked (mode "mask") or withheld ("refuse"); with
    low_confidence="withhold", also withheld when it holds a name the detector is unsure of."""
    spans = pii_find(text)
    counts = dict(Counter(span.kind for span in spans))
    if not spans:
        return FilteredText(text)
    if mode == "refuse":
        return FilteredText(REFUSAL, counts, refused=True)
    if low_confidence == "withhold" and _unsure(spans):
        return FilteredText(UNSURE_REFUSAL, counts, refused=True, refusal=UNSURE_REFUSAL)
    return FilteredText(_masked(text, [(s.start, s.end, s.kind) for s in spans], 0, len(text)), counts)


def _masked(text: str, spans: list[tuple[int, int, str]], start: int, end: int) -> str:
    """text[start:end] with every span overlapping it replaced by its kind (once per span)."""
    parts, position = [], start
    for span_start, span_end, kind in sorted(spans):
        if span_end <= start or span_start >= end:
            continue
        if span_start > position:
            parts.append(text[position:span_start])
        if span_start >= start or position == start:
            parts.append(f"[{kind.upper()}]")
        position = max(position, min(span_end, end))
    parts.append(text[position:end])
    return "".join(parts)


class StreamFilter:
    """The PII filter for a stream: feed() the text pieces as they are decoded, send what it
    returns; finish() returns the rest. `refused` turns true (mode "refuse") at the first span,
    or (low_confidence "withhold") at the first name the detector is unsure of: stop sending
    then, and send `refusal`."""

    def __init__(self, *, mode: str, low_confidence: str = "mask"):
        self.mode = mode
        self.low_confidence = low_confidence
        self.raw = ""
        self.sent_until = 0  # characters of raw already sent (masked)
        self.spans: dict[tuple[int, int], str] = {}
        self.refused = False
        self.refusal = REFUSAL

    def feed(self, piece: str) -> str:
        self.raw += piece
        words = list(re.finditer(r"\S+", self.raw))
        if len(words) <= HOLD_BACK_WORDS:
            return ""
        held_back = words[-HOLD_BACK_WORDS].start()
        # up to the last sentence end before the held-back words: the detector runs once a sentence
        ends = [m.end() for m in _SENTENCE_END.finditer(self.raw, self.sent_until, held_back)]
        return self._send_until(ends[-1]) if ends else ""

    def finish(self) -> str:
        return self._send_until(len(self.raw))

    def _send_until(self, boundary: int) -> str:
        if self.refused or boundary <= self.sent_until:
            return ""
        # a span needs a capitalised word that could be a name, a digit or an "@" where it starts:
        # text to send without any holds no new span, and the detector need not run again
        pending = self.raw[self.sent_until:boundary]
        found = [span for span in pii_find(self.raw) if span.start < boundary] if pii_possible(pending) else []
        for span in found:
            self.spans[(span.start, span.end)] = span.kind
        if self.spans and self.mode == "refuse":
            self.refused = True
            return ""
        if self.low_confidence == "withhold" and _unsure(found):
            self.refused, self.refusal = True, UNSURE_REFUSAL
            return ""
        spans = [(start, end, kind) for (start, end), kind in self.spans.items()]
        # a span that runs past the boundary is sent whole, masked, so it is never split
        boundary = max([boundary] + [end for start, end, _ in spans if start < boundary < end])
        delta = _masked(self.raw, spans, self.sent_until, boundary)
        self.sent_until = boundary
        return delta

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.spans.values()))
