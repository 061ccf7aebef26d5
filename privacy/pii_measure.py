"""How well the PII detector (privacy.pii) does against known values: recall and precision per
kind, each with its Wilson interval.

The truth is given as values per kind for each text ({"name": ["Ann Lee", "Ann"], ...}): every
whole-word occurrence of a value is a true span (longest values first, so "Ann Lee" is one
occurrence, not also "Ann" and "Lee").
- recall: true spans that lie inside a found span of their kind, of all true spans;
- precision: found spans that overlap a true span of their kind, of all found spans of that kind
  (a span that covers part of a name counts as right: it hides part of a person).
"""
import re
from collections.abc import Iterable

from .intervals import wilson_interval
from .pii import KINDS, pii_find_many


def _true_spans(text: str, values: list[str]) -> list[tuple[int, int]]:
    taken: list[tuple[int, int]] = []
    for value in sorted(set(values), key=len, reverse=True):
        for match in re.finditer(rf"(?<![\w@.-]){re.escape(value)}(?![\w@-])", text):
            start, end = match.span()
            if not any(start < t_end and t_start < end for t_start, t_end in taken):
                taken.append((start, end))
    return taken


def pii_measure(items: Iterable[tuple[str, dict[str, list[str]]]]) -> dict[str, dict]:
    """Per kind: {"planted", "found", "recall", "recall_interval", "spans", "correct",
    "precision", "precision_interval"}; a rate with nothing to count is None. `items` are
    (text, {kind: [true values in it]})."""
    items = list(items)
    counts = {kind: {"planted": 0, "found": 0, "spans": 0, "correct": 0} for kind in KINDS}
    for (text, planted), spans in zip(items, pii_find_many(text for text, _ in items)):
        truth = {kind: _true_spans(text, values) for kind, values in planted.items()}
        for kind, true_spans in truth.items():
            counts[kind]["planted"] += len(true_spans)
            counts[kind]["found"] += sum(any(span.kind == kind and span.start <= start and end <= span.end
                                             for span in spans) for start, end in true_spans)
        for span in spans:
            counts[span.kind]["spans"] += 1
            counts[span.kind]["correct"] += any(span.start < end and start < span.end
                                                for start, end in truth.get(span.kind, []))
    return {kind: {
        **c, "recall": c["found"] / c["planted"] if c["planted"] else None,
        "recall_interval": wilson_interval(c["found"], c["planted"]),
        "precision": c["correct"] / c["spans"] if c["spans"] else None,
        "precision_interval": wilson_interval(c["correct"], c["spans"]),
    } for kind, c in counts.items()}


def pii_recall(items: Iterable[tuple[str, dict[str, list[str]]]]) -> dict[str, dict[str, float | int]]:
    """Per kind {"planted", "found", "recall"} (pii_measure's recall alone)."""
    return {kind: {key: row[key] for key in ("planted", "found", "recall")} for kind, row in pii_measure(items).items()}


def pii_measure_lines(measured: dict[str, dict]) -> list[str]:
    """The measurement as lines for a terminal, one per kind that has something to count."""
    def rate(value, interval) -> str:
        if value is None:
            return "—"
        return f"{value:.4f} [{interval['low']:.3f}, {interval['high']:.3f}]"

    lines = ["  kind   recall (found of planted, 95% Wilson interval)   precision (right of found, interval)"]
    for kind, row in measured.items():
        if row["planted"] or row["spans"]:
            lines.append(f"  {kind:<6} {row['found']:>5} of {row['planted']:<5} {rate(row['recall'], row['recall_interval']):<28}"
                         f" {row['correct']:>5} of {row['spans']:<5} {rate(row['precision'], row['precision_interval'])}")
    return lines
