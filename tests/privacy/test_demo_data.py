"""Synthetic private data (privacy.demo_data and the ksg_demo_data command)."""
import hashlib
import json

import pytest
from django.core.management import CommandError, call_command

from privacy.datasets import dataset_parse
from privacy.demo_data import MEDICAL_CONDITIONS, demo_records
from privacy.pii import pii_find

LIMITS = {"max_file_bytes": 50_000_000, "max_record_chars": 20_000}


def generate(tmp_path, domain: str, n: int, seed: int, name: str = "out.jsonl"):
    out = tmp_path / name
    call_command("ksg_demo_data", domain=domain, n=n, seed=seed, out=str(out))
    return out


@pytest.mark.parametrize("domain", ["medical", "finance"])
def test_same_seed_gives_the_same_bytes_and_another_seed_different_ones(tmp_path, domain):
    first = generate(tmp_path, domain, 200, 11, "a.jsonl").read_bytes()
    again = generate(tmp_path, domain, 200, 11, "b.jsonl").read_bytes()
    other = generate(tmp_path, domain, 200, 12, "c.jsonl").read_bytes()
    assert hashlib.sha256(first).digest() == hashlib.sha256(again).digest()
    assert other != first
    assert first.count(b"\n") == 200


@pytest.mark.parametrize("domain", ["medical", "finance"])
def test_output_parses_as_a_dataset_of_distinct_records(tmp_path, domain):
    parsed = dataset_parse(generate(tmp_path, domain, 500, 5), **LIMITS)
    assert len(parsed.records) == 500
    assert parsed.field_mapping == {"instruction": "instruction", "response": "response"}


def test_medical_dialogues_name_the_patient_and_the_doctor_answers_by_name():
    records = demo_records(domain="medical", n=300, seed=1)
    for record in records:
        patient_names = [span.text for span in pii_find(record["instruction"]) if span.kind == "name"]
        assert patient_names, record["instruction"]
        # the doctor addresses the patient: by first name, full name, or title and surname
        assert any(part in record["response"] for name in patient_names for part in name.split()), record
    responses = "\n".join(record["response"] for record in records)
    conditions_seen = {condition for condition, *_ in MEDICAL_CONDITIONS if condition in responses}
    assert len(conditions_seen) >= 15


def test_medical_dialogues_carry_other_personal_details_too():
    text = "\n".join(record["instruction"] for record in demo_records(domain="medical", n=300, seed=2))
    kinds = {span.kind for span in pii_find(text)}
    assert kinds == {"name", "email", "phone", "date", "id"}


def test_finance_items_ask_for_sentiment_and_answer_with_one_of_three_labels():
    records = demo_records(domain="finance", n=300, seed=4)
    labels = set()
    for record in records:
        assert "sentiment" in record["instruction"]
        label = next(word for word in ("positive", "negative", "neutral") if word in record["response"].lower())
        labels.add(label)
    assert labels == {"positive", "negative", "neutral"}
    with_names = sum(any(span.kind == "name" for span in pii_find(record["instruction"])) for record in records)
    with_accounts = sum("account" in record["instruction"] for record in records)
    assert with_names >= 250 and with_accounts >= 30


def test_records_are_json_objects_with_exactly_instruction_and_response(tmp_path):
    lines = generate(tmp_path, "finance", 20, 0).read_text(encoding="utf-8").splitlines()
    assert all(set(json.loads(line)) == {"instruction", "response"} for line in lines)


@pytest.mark.parametrize("options, message", [
    ({"domain": "legal", "n": 5}, "unknown domain 'legal'"),
    ({"domain": "medical", "n": 0}, "at least 1"),
    ({"domain": "medical", "n": -3}, "at least 1"),
])
def test_bad_arguments_are_refused_clearly(tmp_path, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("ksg_demo_data", seed=0, out=str(tmp_path / "x.jsonl"), **options)
    assert not (tmp_path / "x.jsonl").exists()


def test_unwritable_paths_are_refused_clearly(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("ksg_demo_data", domain="medical", n=3, out=str(tmp_path / "missing" / "x.jsonl"))
    with pytest.raises(CommandError, match="is a directory"):
        call_command("ksg_demo_data", domain="medical", n=3, out=str(tmp_path))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("ksg_demo_data", domain="medical", n=3, out=str(tmp_path / "a-file" / "x.jsonl"))
