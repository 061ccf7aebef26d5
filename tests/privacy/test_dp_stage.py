"""Stage 1 as a job: submitted through the service layer, run by a real Celery worker on a tiny
model, with the budget reserved, committed and released, and an adapter PEFT can load."""
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from jobs.kinds import params_as_dict, params_parse
from jobs.models import Job
from jobs.runner import job_execute
from jobs.services import job_cancel, job_event_record, job_start
from privacy.dp import accountant
from privacy.dp.config import DATASET_SIZE_POLICY
from privacy.dp_stage import dp_finetune_run
from privacy.models import LedgerEntry
from privacy.selectors import dataset_balance
from privacy.services import BudgetExceeded, budget_reserve, dp_finetune_submit
from tests.conftest import wait_until
from tests.support.datasets import register_demo_dataset
from tests.support.tiny_model import tiny_model_dir

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture()
def clinic(tmp_path, settings, make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    owner = make_user("ada")
    dataset, records = register_demo_dataset(tmp_path, owner, n=60, seed=3)
    model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records])
    return owner, dataset, model_dir


def small_params(model_dir: Path, **overrides) -> dict:
    return {"target_epsilon": 4.0, "base_model": str(model_dir), "steps": 5, "logical_batch_size": 8,
            "physical_batch_size": 4, "max_length": 48, "lora_rank": 4, **overrides}


def finished(job_id: int) -> Job:
    return wait_until(lambda: Job.objects.get(pk=job_id), lambda job: job.is_finished, timeout=120)


def ledger(job) -> dict[str, LedgerEntry]:
    return {entry.kind: entry for entry in LedgerEntry.objects.filter(job=job)}


def test_dp_job_reserves_trains_commits_releases_and_leaves_a_loadable_adapter(celery_session_worker, clinic):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    owner, dataset, model_dir = clinic
    job = dp_finetune_submit(owner=owner, dataset=dataset, params=small_params(model_dir))
    assert dataset_balance(dataset=dataset).reserved == 4

    job = finished(job.pk)

    assert job.status == Job.Status.SUCCEEDED, job.error
    entries = ledger(job)
    assert list(entries) == ["reserve", "commit", "release"]
    assert entries["commit"].epsilon + entries["release"].epsilon == entries["reserve"].epsilon == 4
    assert 0 < entries["commit"].epsilon <= 4
    assert entries["commit"].mechanism["steps"] == 5 and entries["commit"].delta == dataset.budget.delta
    epsilon_events = [e.payload for e in job.events.filter(kind="epsilon").order_by("seq")]
    assert [e["step"] for e in epsilon_events] == [1, 2, 3, 4, 5]
    assert [e["epsilon"] for e in epsilon_events] == sorted(e["epsilon"] for e in epsilon_events)
    assert entries["commit"].epsilon == Decimal(str(epsilon_events[-1]["epsilon"])).quantize(Decimal("0.000001"), "ROUND_CEILING")
    assert job.events.filter(kind="metric").count() == 5

    (artifact,) = job.artifacts.filter(kind="adapter")
    adapter_dir = Path(django_settings.KSG_ARTIFACT_DIR) / artifact.path
    assert {"adapter_config.json", "adapter_model.safetensors", "privacy.json"} <= {p.name for p in adapter_dir.iterdir()}
    privacy = json.loads((adapter_dir / "privacy.json").read_text())
    assert privacy["epsilon"] == float(entries["commit"].epsilon) and privacy["steps"] == 5
    assert privacy["dataset"] == {"name": "clinic", "sha256": dataset.sha256, "train_records": dataset.train_count,
                                  "train_units": dataset.train_count, "size": DATASET_SIZE_POLICY}
    assert privacy["epsilon_unit"] == "per record" and entries["commit"].mechanism["unit"] == "record"
    # the guarantee's mechanism is in the file; the training set's size follows from it (and is public)
    assert privacy["sample_rate"] > 0 and DATASET_SIZE_POLICY.startswith("public")
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter_dir)

    balance = dataset_balance(dataset=dataset)
    assert balance.spent == entries["commit"].epsilon and balance.reserved == 0
    with pytest.raises(BudgetExceeded, match="asks for epsilon 8"):
        dp_finetune_submit(owner=owner, dataset=dataset, params=small_params(model_dir, target_epsilon=8.0))
    assert Job.objects.filter(kind="dp_finetune").count() == 1


def test_a_dp_job_with_the_loss_on_the_record_trains_on_every_token(celery_session_worker, clinic):
    owner, dataset, model_dir = clinic
    job = finished(dp_finetune_submit(owner=owner, dataset=dataset,
                                      params=small_params(model_dir, steps=2, loss_on="record")).pk)

    assert job.status == Job.Status.SUCCEEDED, job.error
    logged = job.events.filter(kind="log", payload__loss_on__isnull=False).get().payload
    assert logged["loss_on"] == "record" and "the loss on every token of the record" in logged["message"]
    with pytest.raises(Exception, match="loss_on"):
        dp_finetune_submit(owner=owner, dataset=dataset, params=small_params(model_dir, loss_on="instruction"))


def test_cancelled_dp_job_commits_only_the_steps_it_took(celery_session_worker, clinic):
    owner, dataset, model_dir = clinic
    job = dp_finetune_submit(owner=owner, dataset=dataset, params=small_params(model_dir, steps=400))
    wait_until(lambda: job.events.filter(kind="metric").count(), lambda n: n >= 2, timeout=120)

    job_cancel(job=job, actor=owner)
    job = finished(job.pk)

    assert job.status == Job.Status.CANCELLED
    entries = ledger(job)
    steps_started = job.events.filter(kind="epsilon").count()
    assert entries["commit"].mechanism["steps"] == steps_started < 400
    assert entries["commit"].epsilon < 4 and entries["commit"].epsilon + entries["release"].epsilon == 4
    assert not job.artifacts.exists()


def test_a_worker_that_died_mid_training_gets_its_noise_committed_on_the_next_attempt(clinic):
    owner, dataset, model_dir = clinic
    # The state dp_finetune_submit leaves, without a queued message a running worker would take.
    params = params_as_dict(params_parse("dp_finetune", small_params(model_dir, steps=50)))
    job = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, params=params, celery_task_id="t-1")
    budget_reserve(job=job, epsilon=4, actor=owner)
    job_start(job_id=job.pk, celery_task_id=job.celery_task_id)  # attempt 1 ...
    sigma, rate = 1.3, 8 / dataset.train_count
    for step in (1, 2, 3):  # ... drew noise for three steps, then its process was killed
        job_event_record(job_id=job.pk, kind="epsilon", payload={
            "step": step, "planned_steps": 50, "noise_multiplier": sigma, "sample_rate": rate,
            "epsilon": accountant.epsilon_compute(sample_rate=rate, noise_multiplier=sigma, steps=step,
                                                  delta=dataset.budget.delta)})

    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))  # no more beats

    status = job_execute(job_id=job.pk, celery_task_id=job.celery_task_id, stage=dp_finetune_run)  # attempt 2

    job.refresh_from_db()
    assert status == "failed" and job.attempts == 2
    assert "stopped during step 3 of 50" in job.error and "Submit a new job" in job.error
    entries = ledger(job)
    assert list(entries) == ["reserve", "commit", "release"]  # no second reservation
    spent = accountant.epsilon_compute(sample_rate=rate, noise_multiplier=sigma, steps=3, delta=dataset.budget.delta)
    assert float(entries["commit"].epsilon) == pytest.approx(spent, abs=1e-6) and entries["commit"].epsilon >= Decimal(str(spent)).quantize(Decimal("0.000001"), "ROUND_FLOOR")
    assert entries["commit"].mechanism["steps"] == 3


def test_submit_refuses_parameters_that_cannot_train(clinic):
    from jobs.kinds import JobParamsError

    owner, dataset, model_dir = clinic
    with pytest.raises(JobParamsError, match="fewer than logical_batch_size"):
        dp_finetune_submit(owner=owner, dataset=dataset, params=small_params(model_dir, logical_batch_size=500))
    with pytest.raises(JobParamsError, match="physical_batch_size must be between"):
        dp_finetune_submit(owner=owner, dataset=dataset, params=small_params(model_dir, physical_batch_size=16))
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()


def test_under_tight_composition_a_lost_worker_settles_the_steps_it_noised_against_the_plan(clinic):
    from privacy.dp.composition import Mechanism, epsilon_composed
    from privacy.models import PrivacyBudget
    from privacy.selectors import epsilon_ceiling
    from privacy.services import dp_finetune_plan

    owner, dataset, model_dir = clinic
    PrivacyBudget.objects.filter(dataset=dataset).update(composition="tight")
    dataset.refresh_from_db()
    params = params_as_dict(params_parse("dp_finetune", small_params(model_dir, steps=50)))
    plan = dp_finetune_plan(dataset=dataset, parsed=params_parse("dp_finetune", params))
    assert (plan.steps, plan.sample_rate) == (50, 8 / dataset.train_count)  # what the training loop plans
    job = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, params=params, celery_task_id="t-1")
    reserve = budget_reserve(job=job, epsilon=4, actor=owner, plan=plan)  # reservation before any noise
    assert reserve.mechanism["plan"] == plan.as_record()
    job_start(job_id=job.pk, celery_task_id=job.celery_task_id)
    for step in (1, 2, 3):  # attempt 1 drew noise for three steps at the planned sigma, then died
        job_event_record(job_id=job.pk, kind="epsilon", payload={
            "step": step, "planned_steps": 50, "noise_multiplier": plan.noise_multiplier,
            "sample_rate": plan.sample_rate, "epsilon": accountant.epsilon_compute(
                sample_rate=plan.sample_rate, noise_multiplier=plan.noise_multiplier, steps=step,
                delta=dataset.budget.delta)})
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    status = job_execute(job_id=job.pk, celery_task_id=job.celery_task_id, stage=dp_finetune_run)

    assert status == "failed"
    commit = ledger(job)["commit"]
    noised = Mechanism(plan.sample_rate, plan.noise_multiplier, 3)
    spent = epsilon_ceiling(epsilon_composed(mechanisms=[noised], delta=dataset.budget.delta))
    assert commit.mechanism["steps"] == 3 and Decimal(commit.mechanism["composed_after"]) == spent
    balance = dataset_balance(dataset=dataset)
    assert (balance.composition, balance.spent, balance.reserved) == ("tight", spent, 0)
