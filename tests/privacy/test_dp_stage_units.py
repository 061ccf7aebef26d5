"""Stage 1 on a dataset whose privacy unit is the patient: the job samples and clips persons,
accounts at the person sample rate, and every record of the guarantee says "per patient_id"."""
import json
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from jobs.models import Job
from privacy.datasets import dataset_write_jsonl
from privacy.demo_people import demo_people
from privacy.dp import accountant
from privacy.models import LedgerEntry
from privacy.services import dataset_register, dp_finetune_submit
from tests.conftest import wait_until
from tests.support.tiny_model import tiny_model_dir

pytestmark = pytest.mark.django_db(transaction=True)


def test_stage1_per_patient_samples_persons_and_states_epsilon_per_patient(celery_session_worker, tmp_path, settings,
                                                                           make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("ada")
    records = demo_people(domain="medical", people=30, seed=3, records_per_person=(2, 5))
    source = tmp_path / "patients.jsonl"
    dataset_write_jsonl(source, records)
    dataset = dataset_register(owner=owner, name="patients", source_path=source, epsilon_limit="10",
                               heldout_fraction=0.1, privacy_unit="patient_id")
    model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records])
    params = {"target_epsilon": 4.0, "base_model": str(model_dir), "steps": 3, "logical_batch_size": 8,
              "physical_batch_size": 4, "max_length": 48, "lora_rank": 4, "max_records_per_unit": 2}

    job = dp_finetune_submit(owner=owner, dataset=dataset, params=params)
    job = wait_until(lambda: Job.objects.get(pk=job.pk), lambda job: job.is_finished, timeout=120)

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert dataset.train_units == 27 and dataset.train_count > 27  # persons, not records
    commit = LedgerEntry.objects.get(job=job, kind="commit")
    rate = 8 / 27
    assert commit.mechanism["sample_rate"] == pytest.approx(rate)
    assert commit.mechanism["unit"] == "patient_id" and commit.mechanism["max_records_per_unit"] == 2
    assert float(commit.epsilon) == pytest.approx(accountant.epsilon_compute(
        sample_rate=rate, noise_multiplier=commit.mechanism["noise_multiplier"], steps=3,
        delta=dataset.budget.delta, accountant="prv"), abs=1e-5)
    epsilon_events = [e.payload for e in job.events.filter(kind="epsilon").order_by("seq")]
    assert {e["epsilon_unit"] for e in epsilon_events} == {"per patient_id"}
    (artifact,) = job.artifacts.filter(kind="adapter")
    privacy = json.loads((Path(django_settings.KSG_ARTIFACT_DIR) / artifact.path / "privacy.json").read_text())
    assert privacy["epsilon_unit"] == "per patient_id" and privacy["privacy_unit"] == "patient_id"
    assert privacy["dataset"]["train_units"] == 27 and privacy["config"]["max_records_per_unit"] == 2
    logs = [e.payload["message"] for e in job.events.filter(kind="log").order_by("seq")]
    assert any("(27 patient_id units)" in message and "epsilon is per patient_id" in message for message in logs)
