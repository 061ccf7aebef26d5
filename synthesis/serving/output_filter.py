"""The PII output filter: the synthesis stage's detector (privacy.pii) on every completion before
it leaves. Mode "mask" replaces each span by its kind ([NAME], [EMAIL], ...); "refuse" withholds
an output that has any. A stream is filtered as it goes: the last HOLD_BACK_WORDS words are held
back until more text arrives (a name is only recognisable once its last word is there), and a
span is masked wherever it overlaps what is sent, so no detected character leaves unmasked.
"""
import re
from collections import Counter
from dataclasses import dataclass, field

from privacy.pii import pii_find

HOLD_BACK_WORDS = 4  # a title and up to three name words
REFUSAL = "[withheld: the answer contained personal data]"


@dataclass(frozen=True)
class FilteredText:
    text: str
    spans: dict[str, int] = field(default_factory=dict)  # masked spans per kind
    refused: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.spans)


def output_filter(text: str, *, mode: str) -> FilteredText:
    """A whole output through the PII filter: masked (mode "mask") or withheld ("refuse")."""
    spans = pii_find(text)
    counts = dict(Counter(span.kind for span in spans))
    if not spans:
        return FilteredText(text)
    if mode == "refuse":
        return FilteredText(REFUSAL, counts, refused=True)
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
    returns; finish() returns the rest. `refused` turns true (mode "refuse") at the first span:
    stop sending then."""

    def __init__(self, *, mode: str):
        self.mode = mode
        self.raw = ""
        self.sent_until = 0  # characters of raw already sent (masked)
        self.spans: dict[tuple[int, int], str] = {}
        self.refused = False

    def feed(self, piece: str) -> str:
        self.raw += piece
        words = list(re.finditer(r"\S+", self.raw))
        if len(words) <= HOLD_BACK_WORDS:
            return ""
        return self._send_until(words[-HOLD_BACK_WORDS].start())

    def finish(self) -> str:
        return self._send_until(len(self.raw))

    def _send_until(self, boundary: int) -> str:
        if self.refused or boundary <= self.sent_until:
            return ""
        found = pii_find(self.raw)
        for span in found:
            if span.start < boundary:
                self.spans[(span.start, span.end)] = span.kind
        if self.spans and self.mode == "refuse":
            self.refused = True
            return ""
        spans = [(start, end, kind) for (start, end), kind in self.spans.items()]
        # a span that runs past the boundary is sent whole, masked, so it is never split
        boundary = max([boundary] + [end for start, end, _ in spans if start < boundary < end])
        delta = _masked(self.raw, spans, self.sent_until, boundary)
        self.sent_until = boundary
        return delta

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.spans.values()))
