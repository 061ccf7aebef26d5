"""Synthetic private data (privacy.demo_data and the ksg_demo_data command)."""
import hashlib
import io
import json
import re
from collections import defaultdict

import faker
import pytest
from django.core.management import CommandError, call_command

from privacy.datasets import dataset_parse
from privacy.demo_data import MEDICAL_CONDITIONS, demo_records, demo_records_planted
from privacy.demo_people import CUSTOMER_MESSAGES, NAME_FIELDS, demo_people, demo_people_planted
from privacy.pii import pii_find
from privacy.pii_measure import pii_measure

LIMITS = {"max_file_bytes": 50_000_000, "max_record_chars": 20_000}


def generate(tmp_path, domain: str, n: int, seed: int, name: str = "out.jsonl"):
    out = tmp_path / name
    call_command("ksg_demo_data", domain=domain, n=n, seed=seed, out=str(out))
    return out


def generate_people(tmp_path, domain: str, people: int, seed: int, name: str = "people.jsonl", **options):
    out, stdout = tmp_path / name, io.StringIO()
    call_command("ksg_demo_data", domain=domain, people=people, seed=seed, out=str(out), stdout=stdout, **options)
    return out, stdout.getvalue()


# sha256 of `ksg_demo_data --n 50 --seed 7` per installed Faker version: the one-record mode
# writes the same bytes from run to run. Recomputed when the names moved to NAME_LOCALES (names
# the PII detector is not built from); before, the people mode was checked not to change them.
# Another Faker version draws other names; add its hashes from a checkout where this test passes.
ONE_RECORD_MODE_SHA256 = {
    "40.63.0": {"medical": "7e1969e7779afe2ce781ed651fb4af65e63718ab3d3ca981698389143e039dfd",
                "finance": "11bc0ca65a2fe3f7d804513a7207e648c95271c228bbcb0e170cbd0f631e0db1"},
}


@pytest.mark.parametrize("domain", ["medical", "finance"])
def test_the_one_record_mode_writes_what_it_wrote_before_the_people_mode(tmp_path, domain):
    if faker.VERSION not in ONE_RECORD_MODE_SHA256:
        pytest.skip(f"no pinned output for Faker {faker.VERSION}")
    written = generate(tmp_path, domain, 50, 7).read_bytes()
    assert hashlib.sha256(written).hexdigest() == ONE_RECORD_MODE_SHA256[faker.VERSION][domain]


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


# --- people: several records per person --------------------------------------------------------
MEDICAL_FILE_LINE = re.compile(r"MRN (\d{8})[):,]* (?:age )?(\d+)")
FINANCE_NOTE = re.compile(r"\(account (\d+), age (\d+)\)|\((\d+), account (\d+)\)")


def account_and_age(note: str) -> tuple[str, str]:
    account, age, age_first, account_second = FINANCE_NOTE.search(note).groups()
    return (account, age) if account else (account_second, age_first)


def by_person(records: list[dict], unit_field: str) -> dict[str, list[dict]]:
    persons = defaultdict(list)
    for record in records:
        persons[record[unit_field]].append(record)
    return persons


def without_repeats(records: list[dict]) -> list[dict]:
    """A person's records with each exact repeat of the record before it left out."""
    return [record for index, record in enumerate(records) if index == 0 or record != records[index - 1]]


def test_patients_have_several_records_with_a_stable_id_name_age_and_record_number():
    records = demo_people(domain="medical", people=200, seed=3)
    patients = by_person(records, "patient_id")
    assert sorted(patients) == [f"P-{number:05d}" for number in range(1, 201)]
    assert all(2 <= len(visits) <= 8 for visits in patients.values())
    assert {len(visits) for visits in patients.values()} == set(range(2, 9))
    record_numbers, names = set(), set()
    for visits in patients.values():
        details = {MEDICAL_FILE_LINE.search(visit["response"]).groups() for visit in visits}
        assert len(details) == 1, visits  # one record number and one age across every visit
        first_name = visits[0]["response"].split(",")[0].removeprefix("Hi ")
        assert all(visit["response"].startswith(f"Hi {first_name},\n") for visit in visits)
        full_name = re.compile(rf"\b{re.escape(first_name)} [^\W\d_][\w'’-]*")  # names from many languages
        full_names = {name for visit in visits for name in full_name.findall(visit["instruction"])}
        assert len(full_names) == 1, visits
        record_numbers |= {number for number, _ in details}
        names |= full_names
    assert len(record_numbers) == len(names) == 200  # no two patients share a record number or a name


def test_each_visit_recalls_every_earlier_condition_of_the_patient():
    records = demo_people(domain="medical", people=150, seed=4, duplicate_rate=0)
    conditions = [condition for condition, *_ in MEDICAL_CONDITIONS]
    mentioned_by_patient = 0
    for visits in by_person(records, "patient_id").values():
        seen = []
        for visit in visits:
            file_line = visit["response"].split("\n")[1].split(".")[0]
            assert set(seen) == {c for c in conditions if re.search(rf"\b{re.escape(c)}\b", file_line)}, visit
            assert ("no earlier visits" in file_line) == (not seen)
            diagnosis = next(c for c in conditions if f"like {c}." in visit["response"]
                             or f"likely {c};" in visit["response"])
            assert diagnosis not in seen  # a new complaint at every visit
            mentioned_by_patient += bool(seen) and seen[-1] in visit["instruction"]
            seen.append(diagnosis)
    assert mentioned_by_patient >= 100  # about half the later visits: the patient names the last condition


def test_customers_have_a_stable_account_and_age_and_a_growing_history_of_messages():
    records = demo_people(domain="finance", people=150, seed=5, duplicate_rate=0)
    topics = [topic for topic, *_ in CUSTOMER_MESSAGES]
    customers = by_person(records, "customer_id")
    assert len(customers) == 150 and all(2 <= len(messages) <= 8 for messages in customers.values())
    for messages in customers.values():
        assert len({account_and_age(message["response"]) for message in messages}) == 1
        history_counts = [sum(topic in message["response"].split("before this:")[-1].split("earlier messages:")[-1]
                              for topic in topics) for message in messages]
        assert history_counts == list(range(len(messages))), messages
        assert all(any(label in message["response"].lower() for label in ("positive", "negative", "neutral"))
                   for message in messages)


def test_the_response_states_what_the_prompt_leaves_out():
    """What a memorising model would give away: asked by name about a complaint, it answers with the
    record number and age the prompt did not contain."""
    records = demo_people(domain="medical", people=200, seed=6)
    stated = [(MEDICAL_FILE_LINE.search(record["response"]).groups(), record["instruction"]) for record in records]
    hidden_record_number = sum(record_number not in prompt for (record_number, _), prompt in stated)
    hidden_age = sum(age not in prompt for (_, age), prompt in stated)
    assert hidden_record_number >= 0.6 * len(records) and hidden_age >= 0.4 * len(records)


@pytest.mark.parametrize("domain", ["medical", "finance"])
def test_people_mode_is_seeded(tmp_path, domain):
    first, _ = generate_people(tmp_path, domain, 60, 11, "a.jsonl")
    again, _ = generate_people(tmp_path, domain, 60, 11, "b.jsonl")
    other, _ = generate_people(tmp_path, domain, 60, 12, "c.jsonl")
    assert first.read_bytes() == again.read_bytes() != other.read_bytes()


@pytest.mark.parametrize("domain", ["medical", "finance"])
def test_exact_duplicates_occur_at_the_stated_rate_and_nothing_else_repeats(domain):
    unit_field = {"medical": "patient_id", "finance": "customer_id"}[domain]
    records = demo_people(domain=domain, people=1000, seed=8, duplicate_rate=0.1)
    repeats = [index for index in range(1, len(records)) if records[index] == records[index - 1]]
    could_repeat = len(records) - 1000  # every record after a person's first
    assert 0.08 <= len(repeats) / could_repeat <= 0.12
    assert all(records[index][unit_field] == records[index - 1][unit_field] for index in repeats)
    texts = [(r["instruction"], r["response"]) for r in without_repeats(records)]
    assert len(set(texts)) == len(texts)
    none = demo_people(domain=domain, people=300, seed=8, duplicate_rate=0)
    assert len({(r["instruction"], r["response"]) for r in none}) == len(none)


def test_records_per_person_takes_a_range_or_one_number(tmp_path):
    out, _ = generate_people(tmp_path, "medical", 40, 1, records_per_person="3")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(len(visits) for visits in by_person(records, "patient_id").values()) == [3] * 40
    out, _ = generate_people(tmp_path, "finance", 40, 1, records_per_person="4-5")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert {len(messages) for messages in by_person(records, "customer_id").values()} == {4, 5}


@pytest.mark.parametrize("domain, unit_field, name_field", [("medical", "patient_id", "patient_name"),
                                                            ("finance", "customer_id", "customer_name")])
def test_people_records_carry_the_unit_and_name_fields_and_parse_as_a_dataset(tmp_path, domain, unit_field,
                                                                              name_field):
    out, report = generate_people(tmp_path, domain, 100, 2, duplicate_rate=0)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert NAME_FIELDS[domain] == name_field
    assert all(list(record) == ["instruction", "response", unit_field, name_field] for record in lines)
    assert all(record[name_field] in record["instruction"] for record in lines)  # the name the text writes
    names_by_person = {unit: {r[name_field] for r in records} for unit, records in by_person(lines, unit_field).items()}
    assert all(len(names) == 1 for names in names_by_person.values())
    assert len(set.union(*names_by_person.values())) == 100
    assert f"wrote {len(lines)} {domain} records of 100 persons ({unit_field})" in report
    assert f"the dataset upload accepts this file: {len(lines)} records of 100 persons" in report
    assert f"--privacy-unit {unit_field} --identifying-field {name_field}" in report
    assert len(dataset_parse(out, **LIMITS).records) == len(lines)
    parsed = dataset_parse(out, **LIMITS, identifying_fields=[name_field])
    assert [r["identity"] for r in parsed.records] == [{name_field: r[name_field]} for r in lines]


def test_people_files_with_duplicates_are_accepted_and_counted_per_person(tmp_path):
    out, report = generate_people(tmp_path, "medical", 60, 4, duplicate_rate=0.5)
    parsed = dataset_parse(out, **LIMITS, privacy_unit="patient_id")
    assert parsed.duplicates and parsed.unit_count == 60
    assert f"{len(parsed.duplicates)} exact duplicate(s) (kept unless --drop-duplicates)" in report


@pytest.mark.parametrize("options, planted", [
    ({"n": 300}, lambda: demo_records_planted(domain="medical", n=300, seed=7)),
    ({"people": 80}, lambda: demo_people_planted(domain="medical", people=80, seed=7)),
])
def test_the_pii_recall_report_counts_what_the_generator_planted(tmp_path, options, planted):
    stdout = io.StringIO()
    call_command("ksg_demo_data", domain="medical", seed=7, out=str(tmp_path / "x.jsonl"), pii_recall=True,
                 stdout=stdout, **options)
    line = r"^  (\w+) +(\d+) of (\d+) +([\d.]+) \[([\d.]+), ([\d.]+)\] +(\d+) of (\d+) +([\d.]+) \[([\d.]+), ([\d.]+)\]$"
    rows = {m.group(1): tuple(float(value) for value in m.groups()[1:])
            for m in re.finditer(line, stdout.getvalue(), re.MULTILINE)}
    expected = pii_measure((record["instruction"] + "\n" + record["response"], truth) for record, truth in planted())
    assert rows == {kind: (row["found"], row["planted"], round(row["recall"], 4),
                           round(row["recall_interval"]["low"], 3), round(row["recall_interval"]["high"], 3),
                           row["correct"], row["spans"], round(row["precision"], 4),
                           round(row["precision_interval"]["low"], 3), round(row["precision_interval"]["high"], 3))
                    for kind, row in expected.items()}
    assert set(rows) == {"email", "id", "phone", "date", "name"}
    assert all(row[2] >= 0.95 and row[7] >= 0.9 for row in rows.values())  # recall and precision
    assert "PII detector: Presidio" in stdout.getvalue()


@pytest.mark.parametrize("options, message", [
    ({"people": 0}, "--people must be at least 1"),
    ({"people": 5, "records_per_person": "0-3"}, "records per person must be a range within 1-19"),
    ({"people": 5, "records_per_person": "6-2"}, "records per person must be a range"),
    ({"people": 5, "records_per_person": "two"}, "a number or a range like 2-8"),
    ({"people": 5, "duplicate_rate": 1.0}, "probability below 1"),
    ({"people": 5, "duplicate_rate": -0.1}, "probability below 1"),
    ({"n": 5, "records_per_person": "2-3"}, "go with --people"),
    ({"n": 5, "duplicate_rate": 0.1}, "go with --people"),
    ({"n": 5, "people": 5}, "not allowed with"),
    ({}, "one of the arguments --n --people is required"),
])
def test_bad_people_options_are_refused_clearly(tmp_path, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("ksg_demo_data", domain="medical", seed=0, out=str(tmp_path / "x.jsonl"), **options)
    assert not (tmp_path / "x.jsonl").exists()
