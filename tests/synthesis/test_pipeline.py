"""A whole KnowledgeSG run on a tiny model through a real Celery worker: five stages chained,
each on its queue, the epsilon settled, artifacts handed from stage to stage; the privacy
boundary of the server stages; cancel and failure of a run."""
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from jobs.kinds import JobParamsError
from jobs.models import Job
from ksg_web.runs.pipeline import RUN_STAGES, run_cancel, run_submit, run_summary
from jobs.runner import job_execute
from privacy.demo_data import demo_records
from privacy.models import LedgerEntry
from privacy.pii import pii_find
from privacy.services import BudgetExceeded
from ksg_web.runs.presets import preset_stages
from synthesis.prompts import DISTILL_SYSTEM, GENERATION_SYSTEM, GENERATION_USER, seed_instructions
from synthesis.stages import generate_run
from tests.conftest import wait_until
from tests.support.datasets import register_demo_dataset
from tests.support.tiny_model import tiny_model_dir

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture()
def clinic(tmp_path, settings, make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.KSG_SAMPLE_EVENT_SECONDS = 0
    owner = make_user("ada")
    dataset, _ = register_demo_dataset(tmp_path, owner, n=40, seed=5)
    return owner, dataset, public_tiny_model(tmp_path / "tiny")


def public_tiny_model(directory: Path) -> Path:
    """A tiny model whose vocabulary comes from public text only: private names are unknown to it,
    so its synthetic pairs pass the PII filter."""
    public = list(seed_instructions("medical")) + list(GENERATION_SYSTEM.values()) + [GENERATION_USER] + list(DISTILL_SYSTEM.values())
    return tiny_model_dir(directory, public)


def tiny_stages(model_dir: Path, baseline: str = "knowledgesg", **extra) -> dict:
    overrides = [f"{key}={value}" for key, value in {
        "dp_finetune.steps": 3, "dp_finetune.logical_batch_size": 8, "dp_finetune.physical_batch_size": 8,
        "generate.num_instructions": 12, "generate.max_new_tokens": 12, "generate.backend": "transformers",
        "filter.relevance_threshold": 0.0, "filter.backend": "transformers", "distill.max_new_tokens": 12,
        "distill.backend": "transformers", "finetune_target.epochs": 1.0, "finetune_target.logical_batch_size": 4,
        "finetune_target.physical_batch_size": 4, "finetune_target.max_length": 64, **extra}.items()]
    return preset_stages("demo", base_model=str(model_dir), professional_model=str(model_dir), overrides=overrides,
                         baseline=baseline)


def finished(job_id: int, timeout: float = 240) -> Job:
    return wait_until(lambda: Job.objects.get(pk=job_id), lambda job: job.is_finished, timeout=timeout)


def test_a_run_chains_the_five_stages_and_hands_back_a_target_adapter(celery_session_worker, clinic):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    owner, dataset, model_dir = clinic
    # KnowledgeSG's way at scale (the paper preset's): stage 1 on whole records, stage 2 opens the user's turn
    stages = tiny_stages(model_dir, **{"dp_finetune.loss_on": "record", "generate.prompting": "user_turn"})
    run = run_submit(owner=owner, dataset=dataset, stages=stages, preset="demo")

    run = finished(run.pk)

    summary = run_summary(run=run)
    assert run.status == "succeeded", json.dumps(summary, indent=1)
    children = list(run.children.order_by("pk"))
    assert [child.kind for child in children] == list(RUN_STAGES)
    assert all(child.status == "succeeded" for child in children)
    queues = {child.kind: child for child in children}
    assert queues["generate"].params["adapter_artifact"] == queues["dp_finetune"].artifacts.get(kind="adapter").pk
    # the evaluation audits the target model and, beside it, the stage-1 DP adapter
    assert queues["evaluate"].params["dp_adapter_artifact"] == queues["dp_finetune"].artifacts.get(kind="adapter").pk
    assert queues["evaluate"].params["adapter_artifact"] == queues["finetune_target"].artifacts.get(kind="adapter").pk
    assert list(LedgerEntry.objects.filter(job=queues["dp_finetune"]).values_list("kind", flat=True)) == ["reserve", "commit", "release"]
    assert summary["privacy"]["epsilon"] <= 4 and set(summary["stages"]) == set(RUN_STAGES)

    verdicts = [json.loads(line) for line in Path(summary["stages"]["filter"]["artifacts"]["verdicts.jsonl"]).read_text().splitlines()]
    assert len(verdicts) == 12 and all(v["reason"] in (None, "empty_or_malformed", "pii", "duplicate", "not_relevant") for v in verdicts)
    target = queues["finetune_target"]
    synthetic = (Path(django_settings.KSG_ARTIFACT_DIR) / target.artifacts.get(kind="synthetic_data").path).read_text()
    pairs = [json.loads(line) for line in synthetic.splitlines()]
    assert pairs and all(set(pair) == {"instruction", "response"} for pair in pairs)
    private_names = {r["instruction"].split()[1] for r in demo_records(domain="medical", n=40, seed=5)}
    assert not any(name in synthetic for name in private_names if len(name) > 3)
    adapter_dir = Path(django_settings.KSG_ARTIFACT_DIR) / target.artifacts.get(kind="adapter").path
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter_dir)
    assert queues["generate"].events.filter(kind="sample").exists()
    assert queues["generate"].params["prompting"] == "user_turn" and queues["dp_finetune"].params["loss_on"] == "record"
    assert not any(span.kind in ("name", "email", "phone", "id") for pair in pairs for span in pii_find(pair["response"]))


def test_a_run_that_does_not_fit_the_budget_is_refused_whole(clinic):
    owner, dataset, model_dir = clinic
    with pytest.raises(BudgetExceeded):
        run_submit(owner=owner, dataset=dataset, stages=tiny_stages(model_dir, **{"dp_finetune.target_epsilon": 11}))
    assert not Job.objects.exists()


def test_a_typo_in_a_later_stage_is_refused_before_the_run_starts(clinic):
    owner, dataset, model_dir = clinic
    stages = tiny_stages(model_dir)
    stages["distill"]["temperature"] = -1
    with pytest.raises(JobParamsError, match="distill.temperature must be at least 0.0"):
        run_submit(owner=owner, dataset=dataset, stages=stages)
    assert not Job.objects.exists() and not LedgerEntry.objects.exists()


@pytest.mark.parametrize("tamper", ["dataset", "private_path"])
def test_a_server_stage_refuses_a_reference_to_private_data(clinic, tamper):
    owner, dataset, model_dir = clinic
    params = {"adapter_artifact": 1, "base_model": str(model_dir), "domain": "medical"}
    if tamper == "dataset":
        params["dataset"] = dataset.pk
    else:
        params["base_model"] = str(Path(django_settings.KSG_PRIVATE_DIR) / dataset.path / "train.jsonl")
    job = Job.objects.create(kind="generate", owner=owner, params=params, celery_task_id="t")

    assert job_execute(job_id=job.pk, celery_task_id="t", stage=generate_run) == "failed"
    job.refresh_from_db()
    assert "PrivacyBoundaryError" in job.error and "private" in job.error


def test_cancelling_a_run_cancels_its_stage(celery_session_worker, clinic):
    owner, dataset, model_dir = clinic
    run = run_submit(owner=owner, dataset=dataset, stages=tiny_stages(model_dir, **{"dp_finetune.steps": 400}))
    stage = wait_until(lambda: run.children.first(), lambda child: child is not None and child.events.filter(kind="metric").exists(), timeout=120)

    run_cancel(run=run, actor=owner)

    assert finished(stage.pk).status == "cancelled"
    run.refresh_from_db()
    assert run.status == "cancelled" and run.children.count() == 1


def test_a_stage_that_gives_up_after_its_attempts_fails_the_run(clinic, settings, monkeypatch):
    from jobs import services
    from jobs.services import job_start

    owner, dataset, model_dir = clinic
    settings.KSG_MAX_ATTEMPTS = 1
    # No message on the broker: this test plays the worker itself, and a session worker taking
    # the same task would write to the run while the test database is being flushed.
    monkeypatch.setattr(services, "_job_enqueue", lambda job, task_name, queue: None)
    run = run_submit(owner=owner, dataset=dataset, stages=tiny_stages(model_dir))
    stage = run.children.get()
    job_start(job_id=stage.pk, celery_task_id=stage.celery_task_id)  # attempt 1: its worker dies
    Job.objects.filter(pk=stage.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))  # and beats no more

    assert job_execute(job_id=stage.pk, celery_task_id=stage.celery_task_id, stage=generate_run) == "skipped"

    run.refresh_from_db()
    assert run.status == "failed" and "gave up after 1 attempts" in run.error
