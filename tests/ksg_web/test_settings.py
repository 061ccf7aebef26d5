"""Settings resolve both run modes from the environment, and `manage.py check` is clean in each."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
SHOW_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
from jobs.kinds import job_kind_spec, job_kinds_executed
from jobs.runner import stage_time_limit
print(json.dumps({
    "engine": s.DATABASES["default"]["ENGINE"], "db_name": str(s.DATABASES["default"]["NAME"]),
    "mode": s.KSG_RUN_MODE, "broker": s.CELERY_BROKER_URL, "backend": s.CELERY_RESULT_BACKEND,
    "layer": s.CHANNEL_LAYERS["default"]["BACKEND"], "hosts": s.ALLOWED_HOSTS, "debug": s.DEBUG,
    "visibility": s.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"],
    "longest_stage": max(stage_time_limit(job_kind_spec(k)) for k in job_kinds_executed()), "acks_late": s.CELERY_TASK_ACKS_LATE,
    "reject_on_lost": s.CELERY_TASK_REJECT_ON_WORKER_LOST, "prefetch": s.CELERY_WORKER_PREFETCH_MULTIPLIER,
    "cancel_on_loss": s.CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS,
    "private_dir": str(s.KSG_PRIVATE_DIR), "artifact_dir": str(s.KSG_ARTIFACT_DIR),
}))
"""


def run_python(args: list[str], env: dict[str, str], tmp_path: Path, *, timeout: float = 120) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "ALLOWED_HOSTS"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "ksg_web.settings", "KSG_DATA_DIR": str(tmp_path), **env})
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=timeout)


def resolved(env: dict[str, str], tmp_path: Path) -> dict:
    result = run_python(["-c", SHOW_SETTINGS], env, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_embedded_mode_when_nothing_is_configured(tmp_path):
    s = resolved({}, tmp_path)
    assert s["mode"] == "embedded"
    assert s["engine"] == "django.db.backends.sqlite3" and s["db_name"] == str(tmp_path / "ksg.sqlite3")
    assert s["broker"] == "memory://"
    assert s["layer"] == "jobs.channel_layer.EmbeddedChannelLayer"
    assert s["debug"] is False and "localhost" in s["hosts"]
    assert s["private_dir"] == str(tmp_path / "private") and s["artifact_dir"] == str(tmp_path / "artifacts")


def test_distributed_mode_from_database_and_redis_urls(tmp_path):
    s = resolved(
        {"DATABASE_URL": "postgres://ksg:pw@db:5432/ksg", "REDIS_URL": "redis://cache:6379/0",
         "ALLOWED_HOSTS": "ksg.example.org", "DEBUG": "true"},
        tmp_path,
    )
    assert s["mode"] == "distributed"
    assert s["engine"] == "django.db.backends.postgresql" and s["db_name"] == "ksg"
    assert s["broker"] == s["backend"] == "redis://cache:6379/0"
    assert s["layer"] == "channels_redis.core.RedisChannelLayer"
    assert s["hosts"] == ["ksg.example.org"] and s["debug"] is True


def test_long_gpu_job_settings_hold_in_both_modes(tmp_path):
    for env in ({}, {"REDIS_URL": "redis://cache:6379/0"}):
        s = resolved(env, tmp_path)
        assert s["visibility"] > s["longest_stage"]
        # a broker blip must not kill a running stage (tests/jobs/test_restarts.py shows the run surviving)
        assert (s["acks_late"], s["reject_on_lost"], s["prefetch"], s["cancel_on_loss"]) == (True, True, 1, False)


def test_a_malformed_boolean_names_the_variable(tmp_path):
    result = run_python(["-c", SHOW_SETTINGS], {"DEBUG": "maybe"}, tmp_path)
    assert result.returncode != 0 and "DEBUG='maybe' is not a boolean" in result.stderr


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    run_python(["-c", SHOW_SETTINGS], {}, tmp_path)
    key_file = tmp_path / "secret_key"
    first = key_file.read_text()
    run_python(["-c", SHOW_SETTINGS], {}, tmp_path)
    assert key_file.read_text() == first and len(first) > 40
    assert key_file.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("env", [{}, {"DATABASE_URL": "postgres://ksg:pw@db:5432/ksg", "REDIS_URL": "redis://cache:6379/0"}])
def test_manage_py_check_is_clean(tmp_path, env):
    result = run_python(["manage.py", "check", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_manage_py_runs_where_the_private_volume_is_not_mounted(tmp_path):
    # compose.yaml's migrate, reaper and worker-server set KSG_PRIVATE_DIR without the volume
    env = {"KSG_PRIVATE_DIR": str(tmp_path / "not-mounted"), "DATABASE_URL": "postgres://ksg:pw@db:5432/ksg"}
    result = run_python(["manage.py", "check", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "not-mounted").exists()  # not created where the volume should be


@pytest.mark.slow
@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"), reason="this run already uses SQLite"
)
def test_models_and_services_also_pass_on_sqlite(tmp_path):
    """CI runs the suite on PostgreSQL; the embedded database must hold the same behaviour. The
    fuzz modules and the integer bounds are among them: where the two differ (an integer beyond
    64 bits was a 500 on SQLite and a 200 on PostgreSQL), the fuzz finds it."""
    result = run_python(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_models.py", "tests/jobs/test_services.py",
         "tests/jobs/test_worker.py", "tests/privacy/test_ledger.py", "tests/ksg_web/test_api_schema_fuzz.py",
         "tests/ksg_web/test_fuzz.py", "tests/jobs/test_ids.py"],
        {}, tmp_path, timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
