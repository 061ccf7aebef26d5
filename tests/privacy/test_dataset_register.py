"""Registering private datasets: the dataset_register service and the ksg_dataset_add command,
on the real database, with files under a temporary KSG_PRIVATE_DIR."""
import hashlib
import io
import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from privacy.datasets import DatasetError, dataset_write_jsonl
from privacy.demo_data import demo_records
from privacy.models import PrivacyBudget, PrivateDataset
from privacy.services import BudgetConfigError, dataset_register

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # users are not the subject here


@pytest.fixture(scope="module")
def medical_records() -> list[dict]:
    return demo_records(domain="medical", n=200, seed=9)


@pytest.fixture()
def private_dir(settings, tmp_path):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"  # not created yet: registration creates it
    return settings.KSG_PRIVATE_DIR


@pytest.fixture()
def owner(make_user):
    return make_user("ada")


@pytest.fixture()
def medical_file(tmp_path, medical_records):
    path = tmp_path / "upload" / "clinic.jsonl"
    path.parent.mkdir()
    dataset_write_jsonl(path, medical_records)
    return path


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def leftovers(private_dir) -> list:
    datasets_dir = private_dir / "datasets"
    return sorted(datasets_dir.iterdir()) if datasets_dir.exists() else []


def test_register_stores_the_original_and_disjoint_splits_and_creates_the_budget(private_dir, owner, medical_file):
    dataset = dataset_register(owner=owner, name="Clinic notes 2024", source_path=medical_file, epsilon_limit="8")

    directory = private_dir / dataset.path
    assert directory.parent == private_dir / "datasets" and directory.name.startswith("clinic-notes-2024-")
    assert (directory / "original.jsonl").read_bytes() == medical_file.read_bytes()
    train, heldout = read_jsonl(directory / "train.jsonl"), read_jsonl(directory / "heldout.jsonl")
    assert (len(train), len(heldout)) == (180, 20)
    assert {json.dumps(r) for r in train}.isdisjoint(json.dumps(r) for r in heldout)
    assert sorted(map(json.dumps, train + heldout)) == sorted(map(json.dumps, read_jsonl(medical_file)))

    dataset = PrivateDataset.objects.get(pk=dataset.pk)
    assert (dataset.record_count, dataset.train_count, dataset.heldout_count) == (200, 180, 20)
    assert dataset.sha256 == hashlib.sha256(medical_file.read_bytes()).hexdigest()
    assert dataset.size_bytes == medical_file.stat().st_size
    assert (dataset.source_format, dataset.split_seed, dataset.owner) == ("jsonl", 0, owner)
    assert dataset.field_mapping == {"instruction": "instruction", "response": "response"}
    assert set(dataset.pii_summary) == {"name", "email", "phone", "date", "id", "records_with_pii"}
    assert dataset.pii_summary["records_with_pii"] == 200 and dataset.pii_summary["name"] >= 400

    budget = dataset.budget
    assert budget.epsilon_limit == Decimal("8") and budget.accountant == "prv"
    assert budget.delta == 1e-3  # the default for 180 training records: largest power of ten below 1/180


def test_register_a_csv_with_explicit_budget_and_split(private_dir, owner, tmp_path):
    path = tmp_path / "faq.csv"
    rows = "".join(f'"Question {i}, please?","Answer {i}"\n' for i in range(30))
    path.write_text("question,answer\n" + rows, encoding="utf-8")
    dataset = dataset_register(
        owner=owner, name="faq", source_path=path, epsilon_limit=0.1, delta=1e-5, accountant="rdp",
        heldout_fraction=0.2, split_seed=42,
    )
    directory = private_dir / dataset.path
    assert (directory / "original.csv").read_bytes() == path.read_bytes()
    assert (dataset.source_format, dataset.train_count, dataset.heldout_count) == ("csv", 24, 6)
    assert dataset.field_mapping == {"instruction": "question", "response": "answer"}
    assert read_jsonl(directory / "train.jsonl")[0]["instruction"].startswith("Question ")
    assert (dataset.budget.epsilon_limit, dataset.budget.delta, dataset.budget.accountant) == (
        Decimal("0.1"), 1e-5, "rdp")


def test_the_same_seed_gives_the_same_split(private_dir, owner, medical_file):
    first = dataset_register(owner=owner, name="a", source_path=medical_file, epsilon_limit=1, split_seed=3)
    second = dataset_register(owner=owner, name="b", source_path=medical_file, epsilon_limit=1, split_seed=3)
    assert (private_dir / first.path / "heldout.jsonl").read_bytes() == (
        private_dir / second.path / "heldout.jsonl").read_bytes()
    assert first.path != second.path


BAD_INPUTS = [
    ({"name": ""}, DatasetError, "name is empty"),
    ({"name": "   "}, DatasetError, "name is empty"),
    ({"name": "x" * 201}, DatasetError, "limit is 200"),
    ({"name": "bad\x00name"}, DatasetError, "control characters"),
    ({"name": "two\nlines"}, DatasetError, "control characters"),
    ({"epsilon_limit": "abc"}, BudgetConfigError, "must be a number"),
    ({"epsilon_limit": None}, BudgetConfigError, "must be a number"),
    ({"epsilon_limit": True}, BudgetConfigError, "must be a number"),
    ({"epsilon_limit": "0"}, BudgetConfigError, "above 0"),
    ({"epsilon_limit": -1}, BudgetConfigError, "above 0"),
    ({"epsilon_limit": float("nan")}, BudgetConfigError, "finite"),
    ({"epsilon_limit": "Infinity"}, BudgetConfigError, "finite"),
    ({"epsilon_limit": "1e6"}, BudgetConfigError, "too large"),
    ({"epsilon_limit": "0.0000001"}, BudgetConfigError, "more than 6 decimal places"),
    ({"delta": 0}, BudgetConfigError, "strictly between 0 and 1"),
    ({"delta": 1.0}, BudgetConfigError, "strictly between 0 and 1"),
    ({"delta": -1e-5}, BudgetConfigError, "strictly between 0 and 1"),
    ({"delta": float("nan")}, BudgetConfigError, "strictly between 0 and 1"),
    ({"delta": "1e-5"}, BudgetConfigError, "must be a number"),
    ({"delta": 0.01}, BudgetConfigError, "not below 1/n = 0.00556 for n = 180"),
    ({"accountant": "moments"}, BudgetConfigError, "prv, rdp"),
    ({"heldout_fraction": 0.7}, DatasetError, "0 to 0.5"),
    ({"split_seed": "seven"}, DatasetError, "split seed"),
]


@pytest.mark.parametrize("overrides, error_type, message", BAD_INPUTS)
def test_bad_input_is_refused_clearly_and_leaves_nothing_behind(private_dir, owner, medical_file,
                                                                overrides, error_type, message):
    arguments = {"owner": owner, "name": "clinic", "source_path": medical_file, "epsilon_limit": "4"} | overrides
    with pytest.raises(error_type, match=message.replace("(", r"\(").replace(".", r"\.")):
        dataset_register(**arguments)
    assert not PrivateDataset.objects.exists() and not PrivacyBudget.objects.exists()
    assert leftovers(private_dir) == []


def test_a_taken_name_is_refused_and_the_first_dataset_is_untouched(private_dir, owner, medical_file):
    first = dataset_register(owner=owner, name="clinic", source_path=medical_file, epsilon_limit=1)
    with pytest.raises(DatasetError, match="a dataset named 'clinic' already exists"):
        dataset_register(owner=owner, name=" clinic ", source_path=medical_file, epsilon_limit=1)
    assert list(PrivateDataset.objects.all()) == [first]
    assert leftovers(private_dir) == [private_dir / first.path]


def test_missing_and_invalid_files_are_refused_with_their_problems(private_dir, owner, tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        dataset_register(owner=owner, name="x", source_path=tmp_path / "nope.jsonl", epsilon_limit=1)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "response": "b"}\nnot json\n{"instruction": "c"}\n')
    with pytest.raises(DatasetError) as caught:
        dataset_register(owner=owner, name="x", source_path=broken, epsilon_limit=1)
    assert [message[:6] for message in caught.value.errors] == ["line 2", "line 3"]
    assert not PrivateDataset.objects.exists() and leftovers(private_dir) == []


def test_file_and_record_limits_come_from_settings(private_dir, owner, medical_file, settings):
    settings.KSG_MAX_DATASET_BYTES = 1000
    with pytest.raises(DatasetError, match="the limit is 1,000 bytes"):
        dataset_register(owner=owner, name="x", source_path=medical_file, epsilon_limit=1)
    settings.KSG_MAX_DATASET_BYTES = 10**9
    settings.KSG_MAX_RECORD_CHARS = 100
    with pytest.raises(DatasetError, match="the limit is 100"):
        dataset_register(owner=owner, name="x", source_path=medical_file, epsilon_limit=1)
    assert leftovers(private_dir) == []


@pytest.mark.django_db(transaction=True)
def test_a_failed_database_write_removes_the_directory(private_dir, make_user, medical_file):
    # The owner row is gone by the time of the insert: the foreign key fails when the transaction
    # commits, after the files were written.
    owner = make_user("ghost")
    get_user_model().objects.filter(pk=owner.pk).delete()
    with pytest.raises(Exception, match="(?i)foreign key"):
        dataset_register(owner=owner, name="orphan", source_path=medical_file, epsilon_limit=1)
    assert not PrivateDataset.objects.exists() and not PrivacyBudget.objects.exists()
    assert leftovers(private_dir) == []


# --- the ksg_dataset_add command -------------------------------------------------------------------
def run_add(*args) -> str:
    out = io.StringIO()
    call_command("ksg_dataset_add", *map(str, args), stdout=out)
    return out.getvalue()


def test_command_registers_for_the_first_superuser_and_prints_a_summary(private_dir, make_user, medical_file):
    make_user("not-admin")
    admin = get_user_model().objects.create_superuser("admin", password="a-long-password-1")
    get_user_model().objects.create_superuser("admin2", password="a-long-password-1")
    output = run_add(medical_file, "--name", "clinic", "--epsilon-limit", "2.5", "--heldout-fraction", "0.25")
    dataset = PrivateDataset.objects.get()
    assert dataset.owner == admin and dataset.budget.epsilon_limit == Decimal("2.5")
    assert f"registered dataset {dataset.pk} 'clinic'" in output
    assert "records: 200" in output and "train 150, held-out 50" in output
    assert dataset.sha256 in output and "delta 0.001" in output
    assert f"name {dataset.pii_summary['name']}," in output and "records_with_pii 200" in output


def test_command_accepts_owner_delta_accountant_and_seed(private_dir, make_user, medical_file):
    make_user("bob")
    run_add(medical_file, "--name", "n", "--epsilon-limit", "1", "--delta", "1e-6", "--accountant", "rdp",
            "--seed", "5", "--owner", "bob")
    dataset = PrivateDataset.objects.get()
    assert (dataset.owner.username, dataset.split_seed) == ("bob", 5)
    assert (dataset.budget.delta, dataset.budget.accountant) == (1e-6, "rdp")


@pytest.mark.parametrize("args, message", [
    (["--epsilon-limit", "zero"], "epsilon limit must be a number"),
    (["--epsilon-limit", "1", "--delta", "0.5"], "not below 1/n"),
    (["--epsilon-limit", "1", "--delta", "tiny"], "--delta must be a number"),
    (["--epsilon-limit", "1", "--accountant", "xyz"], "unknown accountant"),
    (["--epsilon-limit", "1", "--heldout-fraction", "0.9"], "0 to 0.5"),
    (["--epsilon-limit", "1", "--owner", "nobody"], "no user named 'nobody'"),
])
def test_command_turns_every_error_into_a_clear_command_error(private_dir, make_user, medical_file, args, message):
    get_user_model().objects.create_superuser("admin", password="a-long-password-1")
    with pytest.raises(CommandError, match=message):
        run_add(medical_file, "--name", "clinic", *args)
    assert not PrivateDataset.objects.exists() and leftovers(private_dir) == []


def test_command_without_a_superuser_or_owner_says_what_to_do(private_dir, make_user, medical_file):
    make_user("plain")
    with pytest.raises(CommandError, match="no superuser exists.*--owner"):
        run_add(medical_file, "--name", "clinic", "--epsilon-limit", "1")


def test_command_reports_file_problems_with_line_numbers(private_dir, make_user, tmp_path):
    make_user("bob")
    path = tmp_path / "d.csv"
    path.write_text("instruction,response\nq1,a1\nq1,a1\n")  # a duplicate is reported, never a refusal
    assert "1 exact duplicate(s) kept" in run_add(path, "--name", "clinic", "--epsilon-limit", "1", "--owner", "bob")
    path.write_text("instruction,response\nq1,a1\nq2\n")
    with pytest.raises(CommandError, match="line 3: missing field 'response'"):
        run_add(path, "--name", "clinic-2", "--epsilon-limit", "1", "--owner", "bob")
