"""How well the PII detector (privacy.pii) does against known values: recall and precision per
kind, each with its Wilson interval.

The truth is given as values per kind for each text ({"name": ["Ann Lee", "Ann"], ...}): every
whole-word occurrence of a value is a true span (longest values first, so "Ann Lee" is one
occurrence, not also "Ann" and "Lee").
- recall: true spans that lie inside a found span of their kind, of all true spans;
- precision: found spans that overlap a true span of their kind, of all found spans of that kind
  (a span that covers part of a name counts as right: it hides part of a person);
- with `seen` (the words of the names the detector was trained on, lower-case): the name recall
  again over the name mentions none of whose words is seen ("unseen"), so a recall on names the
  detector has never met is told apart from one on names it learnt.
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


def _words(value: str) -> list[str]:
    return [word.lower() for word in re.findall(r"\w+", value)]


def pii_measure(items: Iterable[tuple[str, dict[str, list[str]]]], *, seen: set[str] | None = None) -> dict[str, dict]:
    """Per kind: {"planted", "found", "recall", "recall_interval", "spans", "correct",
    "precision", "precision_interval"}; a rate with nothing to count is None. `items` are
    (text, {kind: [true values in it]}). With `seen`, the name row also has "unseen_planted",
    "unseen_found", "unseen_recall", "unseen_recall_interval"."""
    items = list(items)
    counts = {kind: {"planted": 0, "found": 0, "spans": 0, "correct": 0} for kind in KINDS}
    unseen = {"unseen_planted": 0, "unseen_found": 0}
    for (text, planted), spans in zip(items, pii_find_many(text for text, _ in items)):
        truth = {kind: _true_spans(text, values) for kind, values in planted.items()}
        for kind, true_spans in truth.items():
            hits = [any(span.kind == kind and span.start <= start and end <= span.end for span in spans)
                    for start, end in true_spans]
            counts[kind]["planted"] += len(true_spans)
            counts[kind]["found"] += sum(hits)
            if kind == "name" and seen is not None:
                for (start, end), hit in zip(true_spans, hits):
                    if not set(_words(text[start:end])) & seen:
                        unseen["unseen_planted"] += 1
                        unseen["unseen_found"] += hit
        for span in spans:
            counts[span.kind]["spans"] += 1
            counts[span.kind]["correct"] += any(span.start < end and start < span.end
                                                for start, end in truth.get(span.kind, []))
    measured = {kind: {
        **c, "recall": c["found"] / c["planted"] if c["planted"] else None,
        "recall_interval": wilson_interval(c["found"], c["planted"]),
        "precision": c["correct"] / c["spans"] if c["spans"] else None,
        "precision_interval": wilson_interval(c["correct"], c["spans"]),
    } for kind, c in counts.items()}
    if seen is not None:
        found, planted = unseen["unseen_found"], unseen["unseen_planted"]
        measured["name"].update(unseen, unseen_recall=found / planted if planted else None,
                                unseen_recall_interval=wilson_interval(found, planted))
    return measured


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
    name = measured.get("name", {})
    if "unseen_planted" in name:
        lines.append(f"  name mentions none of whose words is in a name the NER was trained on: {name['unseen_found']} "
                     f"found of {name['unseen_planted']}, recall {rate(name['unseen_recall'], name['unseen_recall_interval'])}")
    return lines
