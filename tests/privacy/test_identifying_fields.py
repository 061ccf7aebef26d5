"""A dataset's identifying fields: the columns naming the person a record is about. Parsing keeps
their values as each record's "identity" and says what is wrong with a field that is not there,
is the text, or holds no name; the registered dataset stores the fields, its splits carry the
identities (client side), the CLI, the upload form and the pages state them, and the leak scan
looks for the values in what the server can read."""
import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from privacy.datasets import DatasetError, dataset_parse
from privacy.leak_scan import PrivateTextIndex
from privacy.models import AuditEntry, PrivateDataset
from privacy.selectors import dataset_records
from privacy.services import dataset_register

LIMITS = {"max_file_bytes": 1_000_000, "max_record_chars": 10_000}


def write_jsonl(tmp_path, rows, name="clinic.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def parse_errors(path, **options) -> list[str]:
    with pytest.raises(DatasetError) as caught:
        dataset_parse(path, **LIMITS, **options)
    return caught.value.errors


def visits(n_patients=10, per_patient=3):
    return [{"patient_id": f"P-{p:03d}", "patient_name": f"Ada Lovelace{p}", "email": f"ada{p}@example.org",
             "instruction": f"visit {v} of patient {p}: cough", "response": f"advice {p}.{v}"}
            for p in range(n_patients) for v in range(per_patient)]


# --- parsing -----------------------------------------------------------------------------------
def test_parsing_keeps_each_records_identifying_values_and_counts_the_records_without_any(tmp_path):
    rows = [{"instruction": "q1", "response": "a1", "patient_name": "  Ada Lovelace ", "mrn": 12345678},
            {"instruction": "q2", "response": "a2", "patient_name": "Grace Hopper"},  # no mrn: just lacks it
            {"instruction": "q3", "response": "a3", "patient_name": "", "mrn": None},  # neither: no identity
            {"instruction": "q4", "response": "a4", "mrn": 1.5, "other": "dropped"}]
    parsed = dataset_parse(write_jsonl(tmp_path, rows), **LIMITS, identifying_fields=["patient_name", " mrn "])

    assert parsed.records == [
        {"instruction": "q1", "response": "a1", "identity": {"patient_name": "Ada Lovelace", "mrn": "12345678"}},
        {"instruction": "q2", "response": "a2", "identity": {"patient_name": "Grace Hopper"}},
        {"instruction": "q3", "response": "a3"},
        {"instruction": "q4", "response": "a4", "identity": {"mrn": "1.5"}}]
    assert parsed.identifying_fields == ("patient_name", "mrn") and parsed.identity_missing == 1


def test_without_identifying_fields_records_have_no_identity(tmp_path):
    parsed = dataset_parse(write_jsonl(tmp_path, visits(2, 1)), **LIMITS, privacy_unit="patient_id")
    assert [set(record) for record in parsed.records] == [{"instruction", "response", "unit"}] * 2
    assert parsed.identifying_fields == () and parsed.identity_missing == 0


def test_csv_identity_comes_from_its_columns_and_a_column_the_header_lacks_is_named(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("question,answer,patient_name,email\nq1,a1,Ada Lovelace,ada@example.org\nq2,a2,,\n")
    parsed = dataset_parse(path, **LIMITS, identifying_fields=["patient_name", "email"])
    assert [record.get("identity") for record in parsed.records] == [
        {"patient_name": "Ada Lovelace", "email": "ada@example.org"}, None]
    assert parsed.identity_missing == 1

    assert parse_errors(path, identifying_fields=["patient_name", "phone"]) == [
        "line 1: the header has no 'phone' column, an identifying field you named; add it, or leave it out of the "
        "identifying fields"]


def test_a_jsonl_field_that_no_record_has_is_an_error_listing_the_fields_the_records_have(tmp_path):
    errors = parse_errors(write_jsonl(tmp_path, visits(2, 1)), identifying_fields=["patient_nme"])
    assert errors == ["identifying field 'patient_nme' is in no record; the records have the fields 'patient_id', "
                      "'patient_name', 'email', 'instruction', 'response': check its spelling"]


def test_a_list_object_or_boolean_value_is_reported_with_its_line(tmp_path):
    rows = [{"instruction": "q1", "response": "a1", "patient_name": "Ada Lovelace"},
            {"instruction": "q2", "response": "a2", "patient_name": ["Ada", "Lovelace"]},
            {"instruction": "q3", "response": "a3", "patient_name": {"first": "Ada"}},
            {"instruction": "q4", "response": "a4", "patient_name": True}]
    errors = parse_errors(write_jsonl(tmp_path, rows), identifying_fields=["patient_name"])
    assert errors == [
        f"line {line}: identifying field 'patient_name' is {kind}, not text; write the value as a string, or leave "
        "the field out of this record" for line, kind in ((2, "a list"), (3, "an object"), (4, "a boolean"))]


@pytest.mark.parametrize("fields, message", [
    (["patient_name", "patient_name "], "identifying field 'patient_name' is named more than once"),
    (["", "email"], "identifying field '' must be the name of a field"),
    ([7], "identifying field 7 must be the name of a field"),
    ("patient_name", "identifying fields must be a list of field names, not 'patient_name'"),
    (["instruction"], "identifying field 'instruction' is the file's instruction field; name a field that "
                      "identifies the person"),
    ([f"f{i}" for i in range(21)], "the limit is 20"),
])
def test_identifying_field_names_that_cannot_be_used_say_what_to_fix(tmp_path, fields, message):
    errors = parse_errors(write_jsonl(tmp_path, visits(2, 1)), identifying_fields=fields)
    assert any(message in error for error in errors), errors


def test_a_duplicate_is_the_same_text_whatever_the_identity_and_keeps_the_first_identity(tmp_path):
    rows = [{"instruction": "same", "response": "same", "patient_name": "Ada Lovelace"},
            {"instruction": "same", "response": "same", "patient_name": "A. Lovelace"}]
    path = write_jsonl(tmp_path, rows)
    assert dataset_parse(path, **LIMITS, identifying_fields=["patient_name"]).duplicates == [(2, 1)]
    dropped = dataset_parse(path, **LIMITS, identifying_fields=["patient_name"], drop_duplicates=True)
    assert [record["identity"] for record in dropped.records] == [{"patient_name": "Ada Lovelace"}]


# --- registration, CLI, form, pages ------------------------------------------------------------
@pytest.mark.django_db
def test_registration_stores_the_fields_audits_them_and_the_splits_carry_the_identities(tmp_path, settings,
                                                                                        make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("ada")
    rows = visits(10, 3)
    dataset = dataset_register(owner=owner, name="clinic", source_path=write_jsonl(tmp_path, rows), epsilon_limit="8",
                               privacy_unit="patient_id", identifying_fields=["patient_name", "email"], canaries=2)

    assert dataset.identifying_fields == ["patient_name", "email"]
    details = AuditEntry.objects.get(dataset=dataset, action="dataset_registered").details
    assert details["identifying_fields"] == ["patient_name", "email"] and details["identity_missing"] == 0
    train, heldout = (dataset_records(dataset=dataset, split=split) for split in ("train", "heldout"))
    identity_of = {row["patient_id"]: {"patient_name": row["patient_name"], "email": row["email"]} for row in rows}
    assert heldout and all(record["identity"] == identity_of[record["unit"]] for record in heldout)
    assert all(record["identity"] == identity_of[record["unit"]] for record in train if not record.get("canary"))
    assert [record for record in train if record.get("canary") and "identity" in record] == []

    with pytest.raises(DatasetError, match="'phone' is in no record") as caught:
        dataset_register(owner=owner, name="clinic-2", source_path=write_jsonl(tmp_path, rows), epsilon_limit="8",
                         identifying_fields=["phone"])
    assert caught.value.errors[0].startswith("identifying field 'phone'")
    assert not PrivateDataset.objects.filter(name="clinic-2").exists()


@pytest.mark.django_db
def test_the_cli_registers_a_people_demo_file_with_its_name_field_as_identifying(tmp_path, settings, make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    make_user("ada")
    demo = tmp_path / "people.jsonl"
    call_command("ksg_demo_data", domain="medical", people=20, seed=3, out=str(demo), stdout=io.StringIO())
    out = io.StringIO()
    call_command("ksg_dataset_add", str(demo), "--name", "people", "--epsilon-limit", "8", "--owner", "ada",
                 "--privacy-unit", "patient_id", "--identifying-field", "patient_name", "--identifying-field",
                 "patient_id", stdout=out)

    assert "identifying fields: patient_name, patient_id" in out.getvalue()
    dataset = PrivateDataset.objects.get(name="people")
    assert dataset.identifying_fields == ["patient_name", "patient_id"]
    names = {json.loads(line)["patient_name"] for line in demo.read_text(encoding="utf-8").splitlines()}
    train = dataset_records(dataset=dataset, split="train")
    assert {record["identity"]["patient_name"] for record in train} <= names and len(names) == 20

    out = io.StringIO()
    call_command("ksg_dataset_add", str(demo), "--name", "plain", "--epsilon-limit", "8", "--owner", "ada", stdout=out)
    assert "identifying fields: none: the name-reconstruction attack relies on the PII detector alone" in out.getvalue()
    with pytest.raises(CommandError, match="identifying field 'patient_nme' is in no record"):
        call_command("ksg_dataset_add", str(demo), "--name", "typo", "--epsilon-limit", "8", "--owner", "ada",
                     "--identifying-field", "patient_nme", stdout=io.StringIO())


@pytest.mark.django_db
def test_the_upload_form_takes_comma_separated_fields_and_the_page_states_them(client, tmp_path, settings,
                                                                               make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("olive")
    client.force_login(owner)
    content = "".join(json.dumps(row) + "\n" for row in visits(10, 3)).encode()

    def post(name, fields):
        return client.post(reverse("datasets:new"), {
            "file": SimpleUploadedFile("visits.jsonl", content), "name": name, "epsilon_limit": "8", "delta": "",
            "accountant": "prv", "heldout_fraction": "0.1", "identifying_fields": fields}, follow=True)

    page = post("ward", " patient_name, email ,").content.decode()
    dataset = PrivateDataset.objects.get(name="ward")
    assert dataset.identifying_fields == ["patient_name", "email"]
    assert 'id="identifying-fields">patient_name, email</dd>' in page

    refused = post("ward-2", "patient_name, phone")
    assert refused.status_code == 400 and not PrivateDataset.objects.filter(name="ward-2").exists()
    assert "identifying field &#x27;phone&#x27; is in no record" in refused.content.decode()

    plain = post("ward-3", "")
    assert PrivateDataset.objects.get(name="ward-3").identifying_fields == []
    assert "none: the name-reconstruction attack relies on the PII detector alone" in plain.content.decode()


def test_the_leak_scan_finds_an_identity_value_in_a_server_readable_text():
    # "Zebediah Quaxley" is no name the PII detector knows; only the identity makes it findable.
    records = {"train": [{"instruction": "My knee hurts.", "response": "Rest it.", "unit": "P-001",
                          "identity": {"patient_name": "Zebediah Quaxley", "email": "zq@example.org"}}]}
    found = {(f.kind, f.record, f.text) for f in PrivateTextIndex(records).scan(
        '{"synthetic": "Patient ZEBEDIAH QUAXLEY wrote from zq@example.org about a knee"}')}
    assert found == {("identifier", "train[0]", "zebediah quaxley"), ("identifier", "train[0]", "zq example org")}
    without = {"train": [{key: value for key, value in records["train"][0].items() if key != "identity"}]}
    assert PrivateTextIndex(without).scan("Patient Zebediah Quaxley wrote about a knee") == []


def test_training_reads_only_the_text_and_the_scrubbed_baseline_keeps_the_identity_client_side(tmp_path):
    from transformers import AutoTokenizer

    from privacy.baseline_stage import records_scrub
    from privacy.dp.train import examples_tokenize
    from tests.support.tiny_model import tiny_model_dir

    plain = {"instruction": "Hello doctor, my name is John Smith.", "response": "Rest, John."}
    with_identity = {**plain, "identity": {"patient_name": "John Smith", "email": "john@example.org"}}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir(tmp_path, [plain["instruction"], plain["response"]]))
    assert examples_tokenize([with_identity], tokenizer, max_length=64) == examples_tokenize([plain], tokenizer,
                                                                                               max_length=64)
    (scrubbed,), masked = records_scrub([with_identity])
    assert "John Smith" not in scrubbed["instruction"] and masked["name"] >= 1
    assert scrubbed["identity"] == with_identity["identity"] and scrubbed is not with_identity
