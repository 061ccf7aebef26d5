"""Restarts on purpose, of servers the tests start themselves (tests/support/servers.py): Redis
restarted while a run trains, PostgreSQL restarted while a run trains. Workers are real Celery
processes with compose.yaml's pool (prefork, concurrency 1), on those servers alone, so the
suite's session worker and the machine's shared services are never involved."""
import asyncio
import json
import os
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from celery import Celery
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from jobs.models import Job, JobEvent
from ksg_web.runs.pipeline import run_submit
from ksg_web.asgi import application
from ksg_web.settings import redis_channel_layer
from privacy.dp import accountant
from privacy.demo_data import demo_records
from privacy.models import LedgerEntry
from tests.conftest import wait_until
from tests.support.datasets import register_demo_dataset
from tests.support.servers import ThrowawayPostgres, ThrowawayRedis
from tests.support.tiny_model import tiny_model_dir
from tests.support.workers import ROOT, Worker, database_url_for_subprocess
from tests.synthesis.test_pipeline import public_tiny_model, tiny_stages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DP_STEPS = 60  # long enough that the restart lands inside stage 1's training loop


@pytest.fixture()
def redis_server(tmp_path):
    server = ThrowawayRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def _directories(tmp_path: Path, private: Path, artifacts: Path, models: Path) -> dict:
    return {"KSG_DATA_DIR": tmp_path / "worker-data", "KSG_PRIVATE_DIR": private, "KSG_ARTIFACT_DIR": artifacts,
            "KSG_MODEL_CACHE": models}


def _epsilon_event_count(job_id: int) -> int:
    return JobEvent.objects.filter(job_id=job_id, kind="epsilon").count()


class Dashboard(threading.Thread):
    """A browser's job stream, in a thread with its own event loop: follows one job's events
    from seq 1 and, like static/js/job_stream.js, reconnects with `last_seq` whenever its socket
    ends, until the job's final status arrives. `reconnect` makes it drop and reconnect once."""

    def __init__(self, job_id: int, cookie: str):
        super().__init__(daemon=True)
        self.job_id, self.cookie = job_id, cookie
        self.seqs: list[int] = []
        self.connections = 0
        self.reconnect = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._follow())
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _follow(self) -> None:
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"),
                   (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={self.cookie}".encode())]
        while True:
            last_seq = self.seqs[-1] if self.seqs else 0
            stream = WebsocketCommunicator(application, f"/ws/jobs/{self.job_id}/?last_seq={last_seq}", headers=headers)
            try:
                connected, code = await stream.connect(timeout=10)
                if not connected:
                    raise ConnectionError(f"the stream closed the connection ({code})")
                self.connections += 1
                while True:
                    if self.reconnect.is_set():
                        self.reconnect.clear()
                        break
                    # receive_json_from's own timeout would cancel the consumer: wait for output first
                    if await stream.receive_nothing(timeout=0.5):
                        continue
                    event = await stream.receive_json_from(timeout=5)
                    self.seqs.append(event["seq"])
                    if event["kind"] == "status" and event["payload"]["status"] in Job.TERMINAL_STATUSES:
                        return
            except (Exception, asyncio.CancelledError):  # the socket ended or did not open (Redis down): retry
                await asyncio.sleep(0.5)
            finally:
                try:
                    await stream.disconnect()
                except Exception:
                    pass


@pytest.mark.django_db(transaction=True)
def test_a_run_survives_a_redis_restart_and_a_reconnecting_dashboard_gets_every_event(
        tmp_path, settings, make_user, redis_server, monkeypatch):
    settings.KSG_PRIVATE_DIR = tmp_path / "private"
    settings.KSG_ARTIFACT_DIR = tmp_path / "artifacts"
    settings.KSG_SAMPLE_EVENT_SECONDS = 0
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(redis_server.url(0))}
    settings.KSG_STREAM_POLL_SECONDS = 1.0
    owner = make_user("ada")
    dataset, _ = register_demo_dataset(tmp_path, owner, n=40, seed=5)
    model_dir = public_tiny_model(tmp_path / "tiny")
    broker = Celery(broker=redis_server.url(0), backend=redis_server.url(0))
    monkeypatch.setattr("jobs.services.current_app", broker)  # stage 1 goes to the throwaway Redis too

    worker = Worker(tmp_path, queues="client,server", pool="prefork", redis_url=redis_server.url(0),
                    database_url=database_url_for_subprocess(),
                    directories=_directories(tmp_path, settings.KSG_PRIVATE_DIR, settings.KSG_ARTIFACT_DIR,
                                             settings.KSG_MODEL_CACHE))
    dashboard = None
    try:
        run = run_submit(owner=owner, dataset=dataset, stages=tiny_stages(model_dir, **{"dp_finetune.steps": DP_STEPS}),
                         preset="demo")
        stage1 = wait_until(lambda: run.children.filter(kind="dp_finetune").first(), lambda job: job is not None)
        client = Client()
        client.force_login(owner)
        dashboard = Dashboard(stage1.pk, client.cookies[django_settings.SESSION_COOKIE_NAME].value)
        dashboard.start()
        wait_until(lambda: _epsilon_event_count(stage1.pk), lambda n: n >= 5, timeout=180)
        assert _epsilon_event_count(stage1.pk) < DP_STEPS, "training ended before the restart; raise DP_STEPS"

        redis_server.restart(down_seconds=1.0)  # broker, result backend and channel layer all gone for a while
        dashboard.reconnect.set()

        try:
            run = wait_until(lambda: Job.objects.get(pk=run.pk), lambda job: job.is_finished, timeout=300)
        except AssertionError as exc:
            stages = list(run.children.order_by("pk").values_list("kind", "status", "attempts", "error"))
            raise AssertionError(f"{exc}\nstages: {stages}\n{worker.output()}") from None
        dashboard.join(timeout=60)
    finally:
        worker.stop()
        broker.close()
    assert run.status == "succeeded", f"{run.error}\n{worker.output()}"
    children = list(run.children.order_by("pk"))
    assert [child.kind for child in children] == ["dp_finetune", "generate", "filter", "distill", "finetune_target",
                                                  "evaluate"]
    assert all(child.status == "succeeded" and child.attempts == 1 for child in children), worker.output()
    stage1.refresh_from_db()
    assert list(LedgerEntry.objects.filter(job=stage1).values_list("kind", flat=True)) == ["reserve", "commit", "release"]
    assert LedgerEntry.objects.get(job=stage1, kind="commit").mechanism["steps"] == DP_STEPS

    assert dashboard.error is None, repr(dashboard.error)
    assert not dashboard.is_alive(), "the dashboard never saw the stage's final status"
    assert dashboard.connections >= 2  # it did reconnect after the restart
    stored = list(JobEvent.objects.filter(job=stage1).order_by("seq").values_list("seq", flat=True))
    assert dashboard.seqs == stored == list(range(1, len(stored) + 1))  # every event, once, in order


# --- PostgreSQL restart: everything out of process, on a cluster of the test's own -----------

def _manage(env: dict, *args: str, timeout: float = 300) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result.stdout


def _query(url: str, sql: str, *params):
    """Rows of one query on a fresh connection; None while the server is down."""
    try:
        with psycopg.connect(url, connect_timeout=2) as db:
            return db.execute(sql, params).fetchall()
    except psycopg.OperationalError:
        return None


def test_a_postgres_restart_mid_training_is_retried_and_the_ledger_adds_up(tmp_path, redis_server):
    postgres = ThrowawayPostgres().start()
    try:
        url = postgres.url("postgres")
        directories = {"KSG_DATA_DIR": tmp_path / "data", "KSG_PRIVATE_DIR": tmp_path / "private",
                       "KSG_ARTIFACT_DIR": tmp_path / "artifacts", "KSG_MODEL_CACHE": tmp_path / "models"}
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_server.url(0),
               **{name: str(path) for name, path in directories.items()}}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        records = demo_records(domain="medical", n=40, seed=5)
        data_file = tmp_path / "clinic.jsonl"
        data_file.write_text("".join(json.dumps(record) + "\n" for record in records))
        model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records])
        _manage(env, "migrate", "--noinput")
        _manage(env, "ksg_user_add", "ada", "--role", "data_scientist", "--password", "a-long-password-1")
        _manage(env, "ksg_dataset_add", str(data_file), "--name", "clinic", "--epsilon-limit", "10", "--owner", "ada")
        overrides = [f"{key}={value}" for key, value in {
            "dp_finetune.steps": DP_STEPS, "dp_finetune.logical_batch_size": 8, "dp_finetune.physical_batch_size": 8,
            "evaluate.max_records": 8, "evaluate.reconstruction_targets": 3, "evaluate.candidate_set_size": 5,
            "evaluate.generation_records": 2, "evaluate.max_new_tokens": 8, "evaluate.canary_references": 20,
            "evaluate.max_length": 64, "evaluate.sequential_looks": 1}.items()]
        submitted = _manage(env, "ksg_run", "--dataset", "clinic", "--preset", "demo", "--baseline", "dp_direct",
                            "--base-model", str(model_dir), "--professional-model", str(model_dir),
                            *[arg for item in overrides for arg in ("--set", item)])
        run_id = json.loads(submitted)["run"]  # stdout holds the JSON summary alone

        worker = Worker(tmp_path, queues="client,server", pool="prefork", database_url=url,
                        redis_url=redis_server.url(0), directories=directories,
                        extra_env={"KSG_DB_RETRY_SECONDS": "60"})
        try:
            stage1 = wait_until(lambda: _query(url, "SELECT id FROM jobs_job WHERE parent_id = %s AND kind = 'dp_finetune'",
                                               run_id), bool, timeout=60)[0][0]
            wait_until(lambda: _query(url, "SELECT count(*) FROM jobs_jobevent WHERE job_id = %s AND kind = 'epsilon'",
                                      stage1)[0][0], lambda n: n >= 5, timeout=180)
            postgres.restart(down_seconds=2.0)  # every connection terminated; nothing answers for 2 s

            try:
                final = wait_until(lambda: _query(url, "SELECT status, error FROM jobs_job WHERE id = %s", run_id),
                                   lambda rows: rows and rows[0][0] in Job.TERMINAL_STATUSES, timeout=300)[0]
            except AssertionError as exc:
                stages = _query(url, "SELECT kind, status, attempts, error FROM jobs_job WHERE parent_id = %s", run_id)
                raise AssertionError(f"{exc}\nstages: {stages}\n{worker.output()}") from None
        finally:
            worker.stop()
        log = worker.output(tail=200_000)
        assert final[0] == "succeeded", f"{final}\n{log[-4000:]}"
        assert "database unavailable" in log and "retrying" in log, "the restart never hit a worker's write"

        stages = _query(url, "SELECT kind, status, attempts FROM jobs_job WHERE parent_id = %s ORDER BY id", run_id)
        assert stages == [("dp_finetune", "succeeded", 1), ("evaluate", "succeeded", 1)]
        ledger = _query(url, "SELECT kind, epsilon, mechanism FROM privacy_ledgerentry WHERE job_id = %s ORDER BY id",
                        stage1)
        assert [row[0] for row in ledger] == ["reserve", "commit", "release"]
        (_, reserved, _), (_, committed, mechanism), (_, released, _) = ledger
        assert reserved == committed + released and mechanism["steps"] == DP_STEPS
        [(delta,)] = _query(url, "SELECT delta FROM privacy_privacybudget")
        spent = accountant.epsilon_compute(sample_rate=mechanism["sample_rate"], steps=mechanism["steps"],
                                           noise_multiplier=mechanism["noise_multiplier"], delta=delta)
        assert committed >= Decimal(str(spent)) - Decimal("1e-6")  # the accountant's epsilon, never less
        # the sum check: the budget's committed total is the commits' sum, no reservation open, under the limit
        [(limit, commits, reserves, releases)] = _query(url, """
            SELECT b.epsilon_limit,
                   COALESCE(SUM(l.epsilon) FILTER (WHERE l.kind = 'commit'), 0),
                   COALESCE(SUM(l.epsilon) FILTER (WHERE l.kind = 'reserve'), 0),
                   COALESCE(SUM(l.epsilon) FILTER (WHERE l.kind = 'release'), 0)
            FROM privacy_privacybudget b LEFT JOIN privacy_ledgerentry l ON l.budget_id = b.id GROUP BY b.id""")
        assert commits == committed and reserves == commits + releases and commits <= limit
        [(last_step,)] = _query(url, "SELECT max((payload->>'step')::int) FROM jobs_jobevent "
                                     "WHERE job_id = %s AND kind = 'epsilon'", stage1)
        assert last_step == DP_STEPS  # every step's epsilon was recorded before its noise
        seqs = [row[0] for row in _query(url, "SELECT seq FROM jobs_jobevent WHERE job_id = %s ORDER BY seq", stage1)]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        postgres.remove()
