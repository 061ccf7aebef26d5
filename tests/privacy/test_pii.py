"""The PII detector (privacy.pii): each kind with its exact span, and no findings in plain prose."""
import time

import pytest

from privacy.demo_data import demo_records
from privacy.pii import PiiSpan, pii_find, pii_redact, pii_summary


def found(text: str) -> list[tuple[str, str]]:
    return [(span.kind, span.text) for span in pii_find(text)]


@pytest.mark.parametrize("text, expected", [
    ("Write to sarah.j-o+1@mail.example.co.uk today.", ("email", "sarah.j-o+1@mail.example.co.uk")),
    ("Call (555) 123-4567 after six.", ("phone", "(555) 123-4567")),
    ("Call 555-123-4567.", ("phone", "555-123-4567")),
    ("Call 555.123.4567x89 now", ("phone", "555.123.4567x89")),
    ("Call +1-780-563-6083 now", ("phone", "+1-780-563-6083")),
    ("London office: +44 20 7946 0958.", ("phone", "+44 20 7946 0958")),
    ("or text 5551234567 please", ("phone", "5551234567")),
    ("Born 2024-03-01 here.", ("date", "2024-03-01")),
    ("Seen on 03/01/2024.", ("date", "03/01/2024")),
    ("Seen on March 1, 2024 at the clinic.", ("date", "March 1, 2024")),
    ("Seen on 1 March 2024.", ("date", "1 March 2024")),
    ("Due Sept. 3rd", ("date", "Sept. 3rd")),
    ("SSN 123-45-6789 on file", ("id", "123-45-6789")),
    ("Her MRN 12345678 was wrong", ("id", "12345678")),
    ("medical record number: 4471-2209", ("id", "4471-2209")),
    ("Please debit account 1234567890 monthly.", ("id", "1234567890")),
    ("member ID: AB-123456.", ("id", "AB-123456")),
    ("Pay to GB82 WEST 1234 5698 7654 32 now", ("id", "GB82 WEST 1234 5698 7654 32")),
    ("IBAN GB23NSIE08093972980635.", ("id", "GB23NSIE08093972980635")),
    ("My name is Sarah Johnson.", ("name", "Sarah Johnson")),
    ("Thanks, Kevin", ("name", "Kevin")),
    ("I saw Dr. Patel yesterday.", ("name", "Patel")),
    ("Ask Mrs O'Brien-Smith.", ("name", "O'Brien-Smith")),
    ("Signed, John Q. Smith", ("name", "John Q. Smith")),
    ("Will Smith called.", ("name", "Will Smith")),
    ("Then Grace Kelly arrived.", ("name", "Grace Kelly")),
    ("Ms. Grace arrived.", ("name", "Grace")),
])
def test_each_kind_is_found_with_its_exact_span(text, expected):
    spans = pii_find(text)
    assert [(span.kind, span.text) for span in spans] == [expected]
    span = spans[0]
    assert text[span.start:span.end] == span.text


@pytest.mark.parametrize("text", [
    "I have had a headache for three days and it gets worse in the morning.",
    "May I ask whether the results will be ready? Will you call me back?",
    "Grace period ends on Friday. Mark the box and hope for the best.",
    "The company reported revenue of $1,234,567,890 and a margin of 12.5 percent in the second quarter.",
    "Take 400 mg of ibuprofen every 8 hours, and version 1.2.3 fixed the bug.",
    "The Federal Reserve kept rates unchanged. Shares of Apple rose 3%.",
    "My blood pressure was 160 over 100 and my pulse 88.",
    "",
])
def test_ordinary_sentences_have_no_pii(text):
    assert pii_find(text) == []


def test_overlapping_kinds_resolve_to_one_span_and_ids_beat_phones():
    text = "Hi Dr. Jane Doe, account 2125551234 belongs to jane.doe@example.com, born May 5, 1980."
    assert found(text) == [
        ("name", "Jane Doe"), ("id", "2125551234"), ("email", "jane.doe@example.com"), ("date", "May 5, 1980"),
    ]
    spans = pii_find(text)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))
    assert isinstance(spans[0], PiiSpan)


def test_summary_counts_every_kind_and_records_with_pii():
    summary = pii_summary(["Sarah Johnson, call 555-123-4567", "nothing here", "Mail bob@example.com on 2024-01-02"])
    assert summary == {"name": 1, "email": 1, "phone": 1, "date": 1, "id": 0, "records_with_pii": 2}
    assert pii_summary([]) == {"name": 0, "email": 0, "phone": 0, "date": 0, "id": 0, "records_with_pii": 0}


def test_redact_replaces_each_span_with_its_kind():
    assert pii_redact("Dear Sarah Johnson, your MRN 12345678 is ready.") == "Dear [NAME], your MRN [ID] is ready."


def test_every_demo_patient_name_is_found_and_thousands_of_records_take_seconds_at_most():
    records = demo_records(domain="medical", n=2000, seed=3)
    texts = [f"{record['instruction']}\n{record['response']}" for record in records]
    started = time.perf_counter()
    summary = pii_summary(texts)
    elapsed = time.perf_counter() - started
    assert summary["records_with_pii"] == 2000 and summary["name"] >= 4000
    assert elapsed < 5.0, f"{elapsed:.2f} s for 2,000 records"


def test_scrubbing_masks_every_span_the_detector_finds_in_both_fields():
    from privacy.baseline_stage import records_scrub
    from privacy.demo_data import demo_records

    records = demo_records(domain="medical", n=30, seed=4)
    scrubbed, masked = records_scrub(records)
    assert len(scrubbed) == 30 and masked["name"] >= 60  # a patient and a doctor in every record, at least
    for record in scrubbed:
        for field in ("instruction", "response"):
            assert pii_find(record[field]) == [] and "[NAME]" in record["instruction"] + record["response"]
    assert records[0]["instruction"] != scrubbed[0]["instruction"]  # the input is left as it was


def test_recall_counts_each_planted_occurrence_once_and_only_spans_of_its_kind():
    from privacy.pii import pii_recall

    text = "Dear Ann Lee, call 555-201-3344. Thanks, Ann. Ref zqx"
    recall = pii_recall([(text, {"name": ["Ann Lee", "Ann"], "phone": ["555-201-3344"], "id": ["zqx"]})])
    assert recall["name"]["planted"] == 2  # "Ann Lee" and the lone "Ann", not "Ann" inside "Ann Lee" again
    assert recall["phone"] == {"planted": 1, "found": 1, "recall": 1.0}
    assert recall["id"] == {"planted": 1, "found": 0, "recall": 0.0}  # a planted value the detector misses
    assert recall["email"]["recall"] is None


def test_the_detector_finds_nearly_every_planted_name_in_the_demo_data():
    from privacy.demo_data import demo_records_planted
    from privacy.pii import pii_recall

    planted = demo_records_planted(domain="medical", n=100, seed=7)
    recall = pii_recall((r["instruction"] + "\n" + r["response"], truth) for r, truth in planted)
    assert recall["name"]["planted"] > 400 and recall["name"]["recall"] > 0.95
    assert all(recall[kind]["recall"] == 1.0 for kind in ("email", "phone", "id") if recall[kind]["planted"])
