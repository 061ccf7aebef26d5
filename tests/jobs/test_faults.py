"""Faults on purpose, with real Celery worker processes on Redis: a worker SIGKILLed in the
middle of stage-1 DP training, and in the middle of a server stage.

Each test starts its own worker process (`celery -A ksg_web worker`) on a queue of its own, so
the suite's in-process session worker never takes these tasks, and sends the task itself (what
the submit services do on commit) through a Celery app on the same broker. The worker reads the
test database and the test's directories through its environment."""
import os
import uuid
from pathlib import Path

import pytest
from celery import Celery

from jobs.kinds import params_as_dict, params_parse
from jobs.models import Artifact, Job, JobEvent
from jobs.reaper import jobs_reap
from privacy.dp import accountant
from privacy.models import LedgerEntry
from privacy.services import budget_reserve
from tests.conftest import wait_until
from tests.support.datasets import register_demo_dataset
from tests.support.tiny_model import tiny_model_dir
from tests.support.workers import Worker, database_url_for_subprocess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"


def _worker(tmp_path: Path, settings, queue: str) -> Worker:
    return Worker(tmp_path, queues=queue, database_url=database_url_for_subprocess(), redis_url=REDIS_URL, directories={
        "KSG_DATA_DIR": tmp_path / "worker-data", "KSG_PRIVATE_DIR": settings.KSG_PRIVATE_DIR,
        "KSG_ARTIFACT_DIR": settings.KSG_ARTIFACT_DIR, "KSG_MODEL_CACHE": settings.KSG_MODEL_CACHE})


@pytest.fixture()
def broker():
    app = Celery(broker=REDIS_URL, backend=REDIS_URL)
    yield app
    app.close()


@pytest.fixture()
def clinic(tmp_path, settings, make_user):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    owner = make_user("ada")
    dataset, records = register_demo_dataset(tmp_path, owner, n=60, seed=3)
    model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records])
    return owner, dataset, model_dir


def _epsilon_events(job) -> list[dict]:
    return list(JobEvent.objects.filter(job=job, kind="epsilon").order_by("seq").values_list("payload", flat=True))


def test_a_worker_killed_mid_training_gets_its_noised_steps_committed_and_no_second_reservation(
        clinic, tmp_path, settings, broker):
    owner, dataset, model_dir = clinic
    params = params_as_dict(params_parse("dp_finetune", {
        "target_epsilon": 4.0, "base_model": str(model_dir), "steps": 400, "logical_batch_size": 8,
        "physical_batch_size": 4, "max_length": 48, "lora_rank": 4}))
    job = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, params=params,
                             celery_task_id=str(uuid.uuid4()))
    budget_reserve(job=job, epsilon=4, actor=owner)  # what dp_finetune_submit writes before enqueueing
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    worker = _worker(tmp_path, settings, queue)
    try:
        broker.send_task("jobs.dp_finetune", args=[job.pk], queue=queue, task_id=job.celery_task_id)
        wait_until(lambda: len(_epsilon_events(job)), lambda n: n >= 3, timeout=180)
        worker.kill()  # SIGKILL in the middle of training: no chance to settle anything
    finally:
        worker.stop()
    job.refresh_from_db()
    assert job.status == "running" and job.attempts == 1, worker.output()
    noised = _epsilon_events(job)[-1]  # recorded before that step's noise: never under-counts
    assert noised["step"] < 400

    wait_until(lambda: jobs_reap(timeout_seconds=2.0), lambda reaped: reaped == [job.pk], timeout=30)

    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("worker lost")
    entries = {entry.kind: entry for entry in LedgerEntry.objects.filter(job=job)}
    assert list(entries) == ["reserve", "commit", "release"]
    spent = accountant.epsilon_compute(sample_rate=noised["sample_rate"], noise_multiplier=noised["noise_multiplier"],
                                       steps=noised["step"], delta=dataset.budget.delta)
    assert entries["commit"].mechanism["steps"] == noised["step"]
    assert float(entries["commit"].epsilon) == pytest.approx(spent, abs=1e-6) and float(entries["commit"].epsilon) >= spent - 1e-9

    # The broker hands the unacknowledged task to a worker again: it finds the job settled.
    again = _worker(tmp_path, settings, queue)
    try:
        broker.send_task("jobs.dp_finetune", args=[job.pk], queue=queue, task_id=job.celery_task_id)
        assert broker.AsyncResult(job.celery_task_id).get(timeout=120) == "skipped", again.output()
    finally:
        again.stop()
    job.refresh_from_db()
    assert job.attempts == 1 and LedgerEntry.objects.filter(job=job).count() == 3


def test_a_server_stage_killed_mid_generation_reruns_without_duplicates(clinic, tmp_path, settings, broker):
    owner, dataset, model_dir = clinic
    params = params_as_dict(params_parse("generate", {"base_model": str(model_dir), "adapter_artifact": 0,
                                                      "num_instructions": 400, "max_new_tokens": 24}))
    job = Job.objects.create(kind="generate", owner=owner, dataset=dataset, params=params,
                             celery_task_id=str(uuid.uuid4()))
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    worker = _worker(tmp_path, settings, queue)
    try:
        broker.send_task("jobs.generate", args=[job.pk], queue=queue, task_id=job.celery_task_id)
        wait_until(lambda: JobEvent.objects.filter(job=job, kind__in=["sample", "metric"]).count(), lambda n: n >= 1,
                   timeout=180)
        worker.kill()
    finally:
        worker.stop()
    assert not Artifact.objects.filter(job=job).exists()

    again = _worker(tmp_path, settings, queue)  # redelivery: a second attempt of the same job
    try:
        broker.send_task("jobs.generate", args=[job.pk], queue=queue, task_id=job.celery_task_id)
        assert broker.AsyncResult(job.celery_task_id).get(timeout=240) == "succeeded", again.output()
        # and once more, as a duplicate delivery after success: the worker runs it, it does nothing
        broker.send_task("jobs.generate", args=[job.pk], queue=queue, task_id=job.celery_task_id)
        wait_until(again.output, lambda log: "'skipped'" in log, timeout=120)
    finally:
        again.stop()
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2
    assert Artifact.objects.filter(job=job).count() == 1
    seqs = list(JobEvent.objects.filter(job=job).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free, no duplicates
    rows = (Path(settings.KSG_ARTIFACT_DIR) / Artifact.objects.get(job=job).path).read_text().splitlines()
    assert len(rows) == 400
