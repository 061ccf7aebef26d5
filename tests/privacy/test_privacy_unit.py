"""A dataset's privacy unit: the field naming the person each record belongs to. Parsing keeps
it, the split never puts one person on both sides, canaries are persons of their own, and the
registered dataset states its epsilon per person; without one, per record."""
import io
import json
import random

import pytest
from django.core.management import call_command

from privacy.datasets import DatasetError, dataset_parse, dataset_split, dataset_write_jsonl
from privacy.models import AuditEntry
from privacy.selectors import dataset_records
from privacy.services import dataset_register

LIMITS = {"max_file_bytes": 1_000_000, "max_record_chars": 10_000}


def write_jsonl(tmp_path, rows, name="clinic.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def patients(n_patients=12, per_patient=5):
    return [{"patient_id": f"P-{p:03d}", "instruction": f"visit {v} of patient {p}: cough", "response": f"advice {p}.{v}"}
            for p in range(n_patients) for v in range(per_patient)]


def test_parsing_keeps_the_unit_of_every_record_and_says_which_line_lacks_it(tmp_path):
    rows = patients(3, 2)
    parsed = dataset_parse(write_jsonl(tmp_path, rows), **LIMITS, privacy_unit="patient_id")
    assert [r["unit"] for r in parsed.records] == ["P-000", "P-000", "P-001", "P-001", "P-002", "P-002"]
    assert parsed.unit_count == 3 and parsed.privacy_unit == "patient_id"
    numeric = dataset_parse(write_jsonl(tmp_path, [{"customer": 17, "instruction": "a", "response": "b"}], "n.jsonl"),
                            **LIMITS, privacy_unit="customer")
    assert numeric.records[0]["unit"] == "17"
    broken = rows[:2] + [{"instruction": "q", "response": "r"}, {"patient_id": True, "instruction": "s", "response": "t"}]
    with pytest.raises(DatasetError) as caught:
        dataset_parse(write_jsonl(tmp_path, broken, "b.jsonl"), **LIMITS, privacy_unit="patient_id")
    assert caught.value.errors == [
        "line 3: missing privacy unit field 'patient_id'; every record needs the person it belongs to",
        "line 4: privacy unit field 'patient_id' must be text or a whole number, not True"]
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("instruction,response\nq,a\n")
    with pytest.raises(DatasetError, match="line 1: the header has no 'patient_id' column"):
        dataset_parse(csv_path, **LIMITS, privacy_unit="patient_id")
    with pytest.raises(DatasetError, match="is a text field"):
        dataset_parse(csv_path, **LIMITS, privacy_unit="response")


def test_a_duplicate_is_one_persons_repeated_message_not_two_people_saying_the_same(tmp_path):
    rows = [{"patient_id": "A", "instruction": "same", "response": "same"},
            {"patient_id": "B", "instruction": "same", "response": "same"},
            {"patient_id": "A", "instruction": "same", "response": "same"}]
    parsed = dataset_parse(write_jsonl(tmp_path, rows), **LIMITS, privacy_unit="patient_id")
    assert parsed.duplicates == [(3, 1)] and len(parsed.records) == 3


@pytest.mark.parametrize("seed", range(5))
def test_the_split_never_puts_one_person_on_both_sides(seed):
    rng = random.Random(seed)
    records = [{"unit": f"P{rng.randrange(30)}", "instruction": str(i), "response": "r"} for i in range(200)]
    train, heldout = dataset_split(records, heldout_fraction=0.2, seed=seed)
    assert {r["unit"] for r in train}.isdisjoint({r["unit"] for r in heldout})
    assert len(train) + len(heldout) == 200 and heldout
    units = len({r["unit"] for r in records})
    assert len({r["unit"] for r in heldout}) == max(1, round(units * 0.2))


def test_the_record_level_split_is_the_same_as_before_units_existed():
    records = [{"instruction": str(i), "response": "r"} for i in range(50)]
    order = list(range(50))
    random.Random(7).shuffle(order)
    expected_heldout = sorted(order[:5])  # the split before privacy units: a shuffle of record indices
    _, heldout = dataset_split(records, heldout_fraction=0.1, seed=7)
    assert [int(r["instruction"]) for r in heldout] == expected_heldout


@pytest.mark.django_db
def test_a_dataset_registered_per_patient_counts_persons_and_says_so_everywhere(tmp_path, settings, make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("ada")
    rows = patients(40, 6) + [patients(40, 6)[0]]  # one patient sends the same message twice
    dataset = dataset_register(owner=owner, name="clinic", source_path=write_jsonl(tmp_path, rows), epsilon_limit="8",
                               heldout_fraction=0.1, canaries=3, canary_repeats=2, privacy_unit="patient_id")
    train = dataset_records(dataset=dataset, split="train")
    heldout = dataset_records(dataset=dataset, split="heldout")
    assert {r["unit"] for r in train if not r.get("canary")}.isdisjoint({r["unit"] for r in heldout})
    canary_units = [r["unit"] for r in train if r.get("canary")]
    assert len(canary_units) == 6 and len(set(canary_units)) == 3  # each canary (both copies) one person
    assert dataset.train_units == 36 + 3 and dataset.privacy_unit == "patient_id"
    assert dataset.epsilon_unit == "per patient_id" and dataset.duplicate_records == 1
    assert dataset.budget.delta == 1e-2  # below 1/39 training persons, not 1/(216 + 6) records
    details = AuditEntry.objects.get(dataset=dataset, action="dataset_registered").details
    assert details["privacy_unit"] == "patient_id" and details["train_units"] == 39 and details["duplicates"] == 1

    out = io.StringIO()
    dataset_write_jsonl(tmp_path / "again.jsonl", rows)
    call_command("ksg_dataset_add", str(tmp_path / "again.jsonl"), "--name", "clinic-2", "--epsilon-limit", "8",
                 "--owner", "ada", "--privacy-unit", "patient_id", "--drop-duplicates", stdout=out)
    assert "epsilon is per patient_id" in out.getvalue() and "1 exact duplicate(s) left out" in out.getvalue()
    out = io.StringIO()
    call_command("ksg_dataset_add", str(tmp_path / "again.jsonl"), "--name", "clinic-3", "--epsilon-limit", "8",
                 "--owner", "ada", stdout=out)
    assert "privacy unit: the record" in out.getvalue() and "epsilon is per record" in out.getvalue()


@pytest.mark.django_db
def test_the_dashboard_ledger_and_api_state_the_unit(make_user, client):
    from jobs.models import Job
    from privacy.api import dataset_out
    from privacy.compliance import budget_rows, ledger_row
    from privacy.services import budget_reserve
    from tests.privacy.factories import make_dataset

    owner = make_user("ada")
    per_patient = make_dataset(owner, name="clinic")
    per_patient.privacy_unit = "patient_id"
    per_patient.save()
    make_dataset(owner, name="plain")
    assert {row["name"]: row["epsilon_unit"] for row in budget_rows()} == {"clinic": "per patient_id",
                                                                          "plain": "per record"}
    job = Job.objects.create(kind="dp_finetune", owner=owner, dataset=per_patient, params={"target_epsilon": 1})
    entry = budget_reserve(job=job, epsilon=1.0, actor=owner)
    assert ledger_row(entry)["epsilon_unit"] == "per patient_id"
    out = dataset_out(per_patient, owner, usable=True)
    assert out["epsilon_unit"] == "per patient_id" and out["privacy_unit"] == "patient_id"


@pytest.mark.django_db
def test_a_per_patient_job_needs_as_many_persons_as_its_batch(make_user):
    from jobs.kinds import JobParamsError
    from privacy.services import dp_finetune_submit
    from tests.privacy.factories import make_dataset

    owner = make_user("ada")
    dataset = make_dataset(owner, name="clinic")
    dataset.privacy_unit, dataset.train_units = "patient_id", 12  # 900 records of 12 persons
    dataset.save()
    with pytest.raises(JobParamsError, match="12 privacy units \\(persons\\), fewer than logical_batch_size 16"):
        dp_finetune_submit(owner=owner, dataset=dataset, params={"logical_batch_size": 16})
