"""Canary planting at registration: opt-in, recorded, random secrets, only in the training split."""
import json
from pathlib import Path

import pytest

from privacy.canary import CANARY_INSTRUCTION, secret_text
from privacy.datasets import DatasetError
from privacy.models import PrivateDataset
from privacy.selectors import dataset_canaries, dataset_dir, dataset_records
from tests.support.datasets import register_demo_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture()
def private_dir(tmp_path, settings):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    return settings.KSG_PRIVATE_DIR


def test_canaries_are_planted_in_the_training_split_only_and_recorded(tmp_path, private_dir, make_user):
    dataset, records = register_demo_dataset(tmp_path, make_user("ada"), n=30, seed=1, canaries=3, canary_repeats=2)

    canaries = dataset_canaries(dataset=dataset)
    train = dataset_records(dataset=dataset, split="train")
    heldout = dataset_records(dataset=dataset, split="heldout")
    assert dataset.canary_count == 3 and dataset.canary_repeats == 2
    assert len({c["secret"] for c in canaries}) == 3 and all(len(c["secret"]) == 6 for c in canaries)
    planted = [r for r in train if r.get("canary")]
    assert len(planted) == 6 and dataset.train_count == len(train) == 27 + 6
    for canary in canaries:
        copies = [r for r in planted if r["response"] == canary["response"]]
        assert len(copies) == 2 and secret_text(canary["secret"]) in canary["response"]
        assert copies[0]["instruction"] == CANARY_INSTRUCTION
    assert not any(r.get("canary") or r["instruction"] == CANARY_INSTRUCTION for r in heldout)
    assert dataset.record_count == 30  # the uploaded records; canaries are the platform's


def test_each_registration_draws_fresh_secrets(tmp_path, private_dir, make_user):
    owner = make_user("ada")
    first, _ = register_demo_dataset(tmp_path, owner, n=20, seed=1, canaries=5)
    PrivateDataset.objects.filter(pk=first.pk).update(name="clinic-1")
    second, _ = register_demo_dataset(tmp_path, owner, n=20, seed=1, canaries=5)
    assert {c["secret"] for c in dataset_canaries(dataset=first)} != {c["secret"] for c in dataset_canaries(dataset=second)}


def test_no_canaries_by_default(tmp_path, private_dir, make_user):
    dataset, _ = register_demo_dataset(tmp_path, make_user("ada"), n=20, seed=1)
    assert dataset.canary_count == 0 and dataset_canaries(dataset=dataset) == []
    assert not any(r.get("canary") for r in dataset_records(dataset=dataset, split="train"))
    assert not (dataset_dir(dataset=dataset) / "canaries.jsonl").exists()
    assert dataset.allow_nonprivate_baselines is False


@pytest.mark.parametrize("options, message", [
    ({"canaries": -1}, "canary count must be a whole number from 0 to 1000"),
    ({"canaries": 1001}, "canary count"),
    ({"canaries": 2, "canary_repeats": 0}, "canary repeats must be at least 1"),
    ({"canaries": 2, "canary_repeats": 101}, "canary repeats must be a whole number from 0 to 100"),
    ({"canaries": True}, "canary count"),
])
def test_bad_canary_settings_are_refused_and_leave_nothing(tmp_path, private_dir, make_user, options, message):
    with pytest.raises(DatasetError, match=message):
        register_demo_dataset(tmp_path, make_user("ada"), n=20, seed=1, **options)
    assert not PrivateDataset.objects.exists()
    assert not any(Path(private_dir).glob("datasets/*"))


def test_the_cli_plants_canaries_and_allows_baselines(tmp_path, private_dir, make_user):
    import io

    from django.core.management import call_command

    from privacy.datasets import dataset_write_jsonl
    from privacy.demo_data import demo_records

    owner = make_user("ada")
    source = tmp_path / "clinic.jsonl"
    dataset_write_jsonl(source, demo_records(domain="medical", n=20, seed=2))
    out = io.StringIO()
    call_command("ksg_dataset_add", str(source), "--name", "clinic", "--epsilon-limit", "5", "--owner", "ada",
                 "--canaries", "4", "--canary-repeats", "3", "--allow-nonprivate-baselines", stdout=out)
    dataset = PrivateDataset.objects.get(name="clinic")
    assert dataset.owner == owner and dataset.canary_count == 4 and dataset.canary_repeats == 3
    assert dataset.allow_nonprivate_baselines
    assert "canaries: 4 planted x 3" in out.getvalue() and "non-private baselines: allowed" in out.getvalue()
    assert json.loads((dataset_dir(dataset=dataset) / "canaries.jsonl").read_text().splitlines()[0])["secret"]
