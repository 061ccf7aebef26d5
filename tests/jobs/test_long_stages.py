"""A run whose stage lasts longer than the heartbeat timeout, with a reaper running every second:
the run succeeds (a run has no worker and no heartbeat of its own; it lasts as long as its
stages), and the converse still holds: a stage whose worker is SIGKILLed is reaped and ends its run.

Everything runs as a user deploys it: Celery worker processes (compose.yaml's prefork pool) on a
Redis of the test's own, `ksg_reap --every 1` as compose's reaper service, `ksg_run` to submit,
on the suite's database (PostgreSQL where DATABASE_URL is set, SQLite otherwise). The embedded
server (its reaper thread every second) is soaked in tests/ksg_web/test_embedded_soak.py."""
import json
import os
import subprocess
import sys

import pytest

from jobs.models import Job
from privacy.models import LedgerEntry
from tests.conftest import wait_until
from tests.support.datasets import register_demo_dataset
from tests.support.servers import ThrowawayRedis
from tests.support.tiny_model import tiny_model_dir
from tests.support.workers import ROOT, Worker, database_url_for_subprocess

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

HEARTBEAT_TIMEOUT = 1.5  # seconds; stage 1 below trains for several times this (each step is accounted)
# A dp_direct run (DP fine-tuning, then the evaluation) sized for a tiny model.
LONG_RUN = {"dp_finetune.steps": 16, "dp_finetune.logical_batch_size": 8, "dp_finetune.physical_batch_size": 8,
            "dp_finetune.max_length": 48, "evaluate.max_records": 8, "evaluate.reconstruction_targets": 3,
            "evaluate.candidate_set_size": 5, "evaluate.generation_records": 2, "evaluate.max_new_tokens": 8,
            "evaluate.canary_references": 20, "evaluate.max_length": 64,
            "evaluate.sequential_looks": 1}  # caps of 3 targets and 2 questions: one look each


@pytest.fixture()
def deployment(tmp_path, settings, make_user):
    """A dataset and a tiny model on disk, a Redis of the test's own, the environment its
    processes share, and a `ksg_reap --every 1` process; stopped at the end."""
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    owner = make_user("ada")
    dataset, records = register_demo_dataset(tmp_path, owner, n=60, seed=3)
    model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records])
    redis = ThrowawayRedis(tmp_path / "redis").start()
    directories = {"KSG_DATA_DIR": tmp_path / "data", "KSG_PRIVATE_DIR": settings.KSG_PRIVATE_DIR,
                   "KSG_ARTIFACT_DIR": settings.KSG_ARTIFACT_DIR, "KSG_MODEL_CACHE": tmp_path / "models"}
    timing = {"KSG_HEARTBEAT_SECONDS": "0.25", "KSG_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT)}
    env = {**os.environ, "DATABASE_URL": database_url_for_subprocess(), "REDIS_URL": redis.url(0), **timing,
           **{name: str(path) for name, path in directories.items()}}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    reaper_log = (tmp_path / "reaper.log").open("w+")
    reaper = subprocess.Popen([sys.executable, "manage.py", "ksg_reap", "--every", "1"], cwd=ROOT, env=env,
                              stdout=reaper_log, stderr=subprocess.STDOUT)
    try:
        yield {"dataset": dataset, "model_dir": model_dir, "env": env, "directories": directories, "timing": timing,
               "redis": redis, "reaper_log": reaper_log, "tmp_path": tmp_path}
    finally:
        reaper.terminate()
        reaper.wait(timeout=30)
        redis.stop()


def _submit(deployment: dict) -> int:
    overrides = [arg for key, value in LONG_RUN.items() for arg in ("--set", f"{key}={value}")]
    done = subprocess.run([sys.executable, "manage.py", "ksg_run", "--dataset", "clinic", "--preset", "demo",
                           "--baseline", "dp_direct", "--base-model", str(deployment["model_dir"]),
                           "--professional-model", str(deployment["model_dir"]), *overrides],
                          cwd=ROOT, env=deployment["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["run"]  # stdout: the JSON summary alone


def _worker(deployment: dict) -> Worker:
    return Worker(deployment["tmp_path"], queues="client,server", pool="prefork",
                  database_url=deployment["env"]["DATABASE_URL"], redis_url=deployment["redis"].url(0),
                  directories=deployment["directories"], extra_env=deployment["timing"])


def _reaper_output(deployment: dict) -> str:
    deployment["reaper_log"].seek(0)
    return deployment["reaper_log"].read()


def test_a_run_whose_stage_outlasts_the_heartbeat_timeout_succeeds_with_the_reaper_running(deployment):
    run_id = _submit(deployment)
    worker = _worker(deployment)
    try:
        run = wait_until(lambda: Job.objects.get(pk=run_id), lambda job: job.is_finished, timeout=400)
    finally:
        worker.stop()

    stages = {child.kind: child for child in run.children.all()}
    assert run.status == "succeeded", f"{run.error}\n{_reaper_output(deployment)}\n{worker.output()}"
    trained = (stages["dp_finetune"].finished_at - stages["dp_finetune"].started_at).total_seconds()
    assert trained > 2 * HEARTBEAT_TIMEOUT, f"stage 1 took {trained:.1f} s: too short to prove anything"
    print(f"stage 1 trained for {trained:.1f} s, the whole run took {(run.finished_at - run.created_at).total_seconds():.1f} s")
    # The run recorded nothing while stage 1 trained: its own stamp was older than the timeout.
    assert "reaped job" not in _reaper_output(deployment)
    assert [child.status for child in run.children.order_by("pk")] == ["succeeded", "succeeded"]
    entries = list(LedgerEntry.objects.filter(job=stages["dp_finetune"]).values_list("kind", flat=True))
    assert entries == ["reserve", "commit", "release"]


def test_a_stage_whose_worker_is_killed_is_reaped_and_ends_its_run(deployment):
    run_id = _submit(deployment)
    worker = _worker(deployment)
    try:
        stage1 = wait_until(lambda: Job.objects.filter(parent_id=run_id, kind="dp_finetune").first(),
                            lambda job: job is not None and job.events.filter(kind="epsilon").count() >= 3, timeout=180)
        worker.kill()  # SIGKILL mid-training: nothing settles the stage but the reaper
    finally:
        worker.stop()

    run = wait_until(lambda: Job.objects.get(pk=run_id), lambda job: job.is_finished, timeout=60)
    stage1.refresh_from_db()
    assert stage1.status == "failed" and stage1.error.startswith("worker lost"), stage1.error
    assert run.status == "failed" and f"stage dp_finetune (job {stage1.pk}) failed: worker lost" in run.error
    assert f"reaped job {stage1.pk}" in _reaper_output(deployment)
    assert f"reaped job {run_id}\n" not in _reaper_output(deployment)  # the run ended through its stage
    entries = list(LedgerEntry.objects.filter(job=stage1).values_list("kind", flat=True))
    assert entries == ["reserve", "commit", "release"]  # the noised steps' epsilon committed, the rest released
