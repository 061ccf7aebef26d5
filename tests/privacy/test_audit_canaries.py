"""Audit canaries for the one-run audit: drawn at registration, each in the training split by a
coin flip, kept with their flips on the client side."""

import pytest

from privacy.canary import AUDIT_INSTRUCTION, audit_canary_records, secret_text
from privacy.datasets import DatasetError
from privacy.demo_people import demo_people
from privacy.datasets import dataset_write_jsonl
from privacy.models import AuditEntry
from privacy.selectors import AUDIT_CANARIES_FILE, dataset_audit_canaries, dataset_dir, dataset_records
from privacy.services.datasets import AUDIT_RECORDS_PER_UNIT, dataset_register
from tests.support.datasets import register_demo_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture()
def private_dir(tmp_path, settings):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    return settings.KSG_PRIVATE_DIR


def test_audit_canaries_are_distinct_and_flipped_fairly_by_seed():
    rows = audit_canary_records(400, seed=3)
    assert rows == audit_canary_records(400, seed=3)
    assert len({row["secret"] for row in rows}) == 400 and len({row["instruction"] for row in rows}) == 400
    assert 150 < sum(row["included"] for row in rows) < 250
    assert all(secret_text(row["secret"]) in row["response"] and len(row["secret"]) == 8 for row in rows)


def test_included_canaries_are_trained_on_once_and_the_others_never(tmp_path, private_dir, make_user):
    dataset, _ = register_demo_dataset(tmp_path, make_user("ada"), n=30, seed=1, audit_canaries=40)

    drawn = dataset_audit_canaries(dataset=dataset)
    train = dataset_records(dataset=dataset, split="train")
    heldout = dataset_records(dataset=dataset, split="heldout")
    assert dataset.audit_canary_count == 40 and len(drawn) == 40
    planted = [record for record in train if record.get("audit")]
    included = [row for row in drawn if row["included"]]
    assert sorted(r["response"] for r in planted) == sorted(row["response"] for row in included)
    assert all(record["canary"] for record in planted)  # kept out of the attacks on real records
    assert dataset.train_count == 27 + len(included)
    trained_responses = {record["response"] for record in train + heldout}
    assert not any(row["response"] in trained_responses for row in drawn if not row["included"])
    entry = AuditEntry.objects.get(dataset=dataset, action=AuditEntry.Action.DATASET_REGISTERED)
    assert entry.details["audit_canaries"] == 40 and entry.details["audit_canaries_included"] == len(included)


def test_with_a_privacy_unit_each_audit_canary_is_a_person_of_its_own(tmp_path, private_dir, make_user):
    source = tmp_path / "patients.jsonl"
    dataset_write_jsonl(source, demo_people(domain="medical", people=20, seed=2))
    dataset = dataset_register(owner=make_user("ada"), name="patients", source_path=source, epsilon_limit="10",
                               privacy_unit="patient_id", audit_canaries=30)
    planted = [record for record in dataset_records(dataset=dataset, split="train") if record.get("audit")]
    units = {record["unit"] for record in planted}
    assert len(planted) == AUDIT_RECORDS_PER_UNIT * len(units) > 0  # each a person with several records
    assert all(unit.startswith("audit-") for unit in units)
    included = [row for row in dataset_audit_canaries(dataset=dataset) if row["included"]]
    assert len(units) == len(included)
    people = {record["unit"] for record in dataset_records(dataset=dataset, split="train") if not record.get("canary")}
    assert dataset.train_units == len(people) + len(units)


def test_no_audit_canaries_by_default(tmp_path, private_dir, make_user):
    dataset, _ = register_demo_dataset(tmp_path, make_user("ada"), n=20, seed=1)
    assert dataset.audit_canary_count == 0 and dataset_audit_canaries(dataset=dataset) == []
    assert not (dataset_dir(dataset=dataset) / AUDIT_CANARIES_FILE).exists()
    assert not any(record["instruction"].startswith(AUDIT_INSTRUCTION[:20])
                   for record in dataset_records(dataset=dataset, split="train"))


@pytest.mark.parametrize("count, message", [(-1, "audit canaries must be a whole number from 0 to 10000"),
                                            (10_001, "audit canaries must be"), (1, "audit canaries: 1 cannot be audited"),
                                            (True, "audit canaries must be")])
def test_bad_audit_canary_counts_are_refused_and_leave_nothing(tmp_path, private_dir, make_user, count, message):
    with pytest.raises(DatasetError, match=message):
        register_demo_dataset(tmp_path, make_user("ada"), n=20, seed=1, audit_canaries=count)
    assert not (private_dir / "datasets").exists() or not any((private_dir / "datasets").iterdir())


def test_the_cli_draws_audit_canaries_and_says_so(tmp_path, private_dir, make_user):
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from privacy.models import PrivateDataset

    make_user("ada")
    source = tmp_path / "people.jsonl"
    dataset_write_jsonl(source, demo_people(domain="medical", people=12, seed=4))
    out = io.StringIO()
    call_command("ksg_dataset_add", str(source), "--name", "audited", "--epsilon-limit", "8", "--owner", "ada",
                 "--privacy-unit", "patient_id", "--audit-canaries", "20", stdout=out)
    assert "audit canaries: 20 drawn" in out.getvalue()
    assert len(dataset_audit_canaries(dataset=PrivateDataset.objects.get(name="audited"))) == 20
    out = io.StringIO()
    call_command("ksg_dataset_add", str(source), "--name", "plain", "--epsilon-limit", "8", "--owner", "ada", stdout=out)
    assert "audit canaries: none (runs on this dataset are not audited)" in out.getvalue()
    with pytest.raises(CommandError, match="audit canaries: 1 cannot be audited"):
        call_command("ksg_dataset_add", str(source), "--name", "one", "--epsilon-limit", "8", "--owner", "ada",
                     "--audit-canaries", "1", stdout=io.StringIO())
