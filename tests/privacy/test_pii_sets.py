"""The PII detector's name recall and precision on sets it was not built from: the hand-written
messages (tests/privacy/pii_sets/) and the demo data, whose names come from other locales than
anything the detector reads. The lower bounds are the figures measured (docs/RESULTS.md), so a
change that loses names, or masks more words that are not names, fails here."""
import json
from pathlib import Path

import pytest

from privacy.demo_data import demo_records_planted
from privacy.pii_measure import pii_measure

SETS = Path(__file__).parent / "pii_sets"


def _marked(name: str) -> list[tuple[str, dict]]:
    rows = [json.loads(line) for line in (SETS / name).read_text(encoding="utf-8").splitlines() if line]
    return [(row["text"], row["pii"]) for row in rows]


def test_on_the_hand_written_messages_name_recall_is_at_least_095_and_precision_090():
    measured = pii_measure(_marked("pii_handwritten.jsonl"))["name"]
    assert measured["planted"] >= 60
    assert measured["recall"] >= 0.95 and measured["precision"] >= 0.9, measured


def test_on_the_first_held_out_set_the_misses_it_showed_are_found():
    """Written after the rules were tuned on pii_handwritten.jsonl and measured once at recall
    29 of 32; its four misses ("Aoife and I", "whether Yusuf can", "Lorcan's asthma", "Amadou
    Diallo missed") led to the parse-based recogniser, so it is no longer held out: 32 of 32 now."""
    measured = pii_measure(_marked("pii_handwritten_heldout.jsonl"))["name"]
    assert measured["found"] == measured["planted"] == 32 and measured["precision"] >= 0.95, measured


def test_on_the_second_held_out_set_recall_and_precision_stay_at_what_was_reached_after_it():
    """Written after the parse-based recogniser and measured once: recall 33 of 35 (0.943),
    precision 34 of 40 (0.850), below the issue's bar on both (docs/RESULTS.md). Two of its
    errors led to general rules (a hyphenated surname in the parse's run, '&' names a firm, a
    possessive before a verb is an eponym), so it is no longer held out: 34 of 35 and 34 of 37."""
    measured = pii_measure(_marked("pii_handwritten_heldout2.jsonl"))["name"]
    assert measured["planted"] == 35
    assert measured["found"] >= 34 and measured["precision"] >= 0.9, measured


def test_on_the_third_held_out_set_recall_and_precision_stay_at_what_was_measured_once():
    """Written after those rules, before any measurement on it, and measured once: recall 26 of
    30 (0.867 [0.70, 0.95]: below the 0.95 bar; names as the object of "to" or "for" and a
    Korean name with a lower-case second part are missed), precision 27 of 30 (0.900). A bug
    it did not show was fixed after it (a plain "to" marked a place); the figures stayed. Round 3
    worked on its misses and errors (a name a pronoun refers back to, lower-case Korean syllables,
    what an institution does to money), so it is no longer held out: 30 of 30 and 30 of 31."""
    measured = pii_measure(_marked("pii_handwritten_heldout3.jsonl"))["name"]
    assert measured["planted"] == 30
    assert measured["found"] >= 30 and measured["precision"] >= 0.96, measured


def test_on_the_fourth_held_out_set_recall_and_precision_stay_at_what_was_measured_once():
    """Written after the "to" fix, before any measurement on it, and measured once: recall 27 of
    30 (0.900 [0.74, 0.97]: below the 0.95 bar), precision 27 of 30 (0.900). Round 3 worked on its
    errors (an indirect object, "the address for X", firms as subjects), so it is no longer held
    out: 30 of 30 and 30 of 30."""
    measured = pii_measure(_marked("pii_handwritten_heldout4.jsonl"))["name"]
    assert measured["planted"] == 30
    assert measured["found"] >= 30 and measured["precision"] >= 0.96, measured


def test_on_the_fifth_held_out_set_recall_and_precision_stay_at_what_was_measured_once():
    """Written before round 3 changed the detector, measured once after it (commit d76b106): recall
    42 of 45 (0.933 [0.82, 0.98]), precision 43 of 48 (0.896 [0.78, 0.96]): below the 0.95 and 0.9
    bar (docs/RESULTS.md). The set marks names only. Rounds 4 and 5 worked on its errors, so it is no
    longer held out: 45 of 45 and 45 of 47 (Klarna and "Hashimoto's thyroiditis" still masked)."""
    measured = pii_measure(_marked("pii_handwritten_heldout5.jsonl"))["name"]
    assert measured["planted"] == 45
    assert measured["found"] >= 45 and measured["correct"] >= 45 and measured["spans"] <= 47, measured


def test_on_the_sixth_held_out_set_recall_and_precision_stay_at_what_was_reached_after_it():
    """Written by a helper that never read the detector, committed before round 4 changed it
    (bb328b3), measured once at 19911f0: recall 90 of 99 (0.909 [0.84, 0.95]), precision 93 of 109
    (0.853 [0.78, 0.91]), below the bar (docs/RESULTS.md). Round 5 worked on its errors, so it is
    no longer held out: 97 of 99 and 97 of 99 after round 5, 98 of 99 and 98 of 100 after round 6."""
    measured = pii_measure(_marked("pii_handwritten_heldout6.jsonl"))["name"]
    assert measured["planted"] == 99
    assert measured["found"] >= 98 and measured["correct"] >= 98 and measured["spans"] <= 100, measured


def test_on_the_seventh_held_out_set_recall_and_precision_stay_at_what_was_reached_after_it():
    """Written by a helper told nothing of what the detector finds hard, committed (52de1eb) and
    measured once at 66de665: recall 137 of 173 (0.792 [0.73, 0.85]), precision 139 of 165 (0.842),
    far below the bar (docs/RESULTS.md). Round 6 worked on its errors (lower-case names, signatures,
    headers, ages, note forms, capitalised common nouns), so it is no longer held out: 172 of 173
    and 172 of 176."""
    measured = pii_measure(_marked("pii_handwritten_heldout7.jsonl"))["name"]
    assert measured["planted"] == 173
    assert measured["found"] >= 172 and measured["correct"] >= 172 and measured["spans"] <= 176, measured


def test_on_the_eighth_held_out_set_recall_and_precision_stay_at_what_was_reached_after_it():
    """Written blind like the seventh, committed (6da3b16) and measured once at 644eed3: recall 138 of
    154 (0.896 [0.84, 0.94]), precision 138 of 157 (0.879 [0.82, 0.92]), below the bar. Round 7
    worked on its errors, so it is no longer held out: 152 of 154 and 152 of 158."""
    measured = pii_measure(_marked("pii_handwritten_heldout8.jsonl"))["name"]
    assert measured["planted"] == 154
    assert measured["found"] >= 152 and measured["correct"] >= 152 and measured["spans"] <= 158, measured


def test_on_the_ninth_held_out_set_recall_and_precision_stay_at_what_was_reached_after_it():
    """Written blind like the seventh, committed (92de4f1) and measured once at 7a50d94: recall 118 of
    139 (0.849 [0.78, 0.90]), precision 119 of 142 (0.838), below the bar. Round 8 worked on its
    errors, so it is no longer held out: 135 of 139 and 135 of 138; with the fine-tuned NER (trained on
    it too) 137 of 139 and 137 of 139."""
    measured = pii_measure(_marked("pii_handwritten_heldout9.jsonl"))["name"]
    assert measured["planted"] == 139
    assert measured["found"] >= 136 and measured["correct"] >= 136 and measured["spans"] <= 139, measured


@pytest.mark.parametrize("name, planted, found, spans, correct", [
    # written blind (e2af0bd, bf9b8f1), measured once: with the published NER 220/254 and 224/230, 218/246 and
    # 223/257; with the NER fine-tuned on sets 1 to 9, 237/254 and 238/249, 235/246 and 237/285. Then trained on
    ("pii_handwritten_heldout10.jsonl", 254, 243, 246, 244),
    ("pii_handwritten_heldout11.jsonl", 246, 238, 247, 240),
    # written blind (aaf92a6) and measured once with this detector, never trained on (docs/RESULTS.md)
    ("pii_handwritten_heldout12.jsonl", 213, 203, 221, 206),
    ("pii_handwritten_heldout13.jsonl", 202, 187, 208, 193),
])
def test_on_the_tenth_to_thirteenth_sets_the_fine_tuned_detector_keeps_what_it_reached(name, planted, found, spans,
                                                                                       correct):
    """Two names of slack: a CPU's float rounding may move a span the NER is least sure of."""
    measured = pii_measure(_marked(name))["name"]
    assert measured["planted"] == planted
    assert measured["found"] >= found - 2 and measured["correct"] >= correct - 2, measured
    assert measured["spans"] <= spans + 2, measured


@pytest.mark.parametrize("domain, n, recall, precision", [
    ("finance", 150, 0.97, 0.95),  # company names of surnames ("Williams, Lam and Jones") and towns are not names
    ("medical", 100, 0.99, 0.99),
])
def test_on_the_demo_data_names_are_found_and_companies_and_towns_are_not(domain, n, recall, precision):
    planted = demo_records_planted(domain=domain, n=n, seed=7)
    measured = pii_measure((r["instruction"] + "\n" + r["response"], truth) for r, truth in planted)["name"]
    assert measured["planted"] >= n
    assert measured["recall"] >= recall and measured["precision"] >= precision, measured
