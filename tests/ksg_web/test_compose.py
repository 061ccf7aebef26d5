"""compose.yaml cannot run here (no Docker engine), so its promises are checked by reading it."""
from pathlib import Path

import pytest
import yaml

COMPOSE = yaml.safe_load((Path(__file__).resolve().parents[2] / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def volume_names(service: str) -> set[str]:
    return {spec.split(":")[0] for spec in SERVICES[service].get("volumes", [])}


def test_private_data_is_mounted_only_on_web_and_the_client_worker():
    holders = {name for name in SERVICES if "private-data" in volume_names(name)}
    assert holders == {"web", "worker-client"}


@pytest.mark.parametrize("service, queue", [("worker-client", "client"), ("worker-server", "server")])
def test_each_worker_serves_one_queue_one_task_at_a_time_on_a_gpu(service, queue):
    command = SERVICES[service]["command"]
    assert command[:4] == ["celery", "-A", "ksg_web", "worker"]
    assert command[command.index("-Q") + 1] == queue
    assert command[command.index("--concurrency") + 1] == "1"
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    (device,) = SERVICES[service]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]


def test_web_is_daphne_on_the_asgi_application_after_migrations():
    web = SERVICES["web"]
    assert web["command"][0] == "daphne" and web["command"][-1] == "ksg_web.asgi:application"
    assert web["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_every_app_service_uses_postgres_and_redis():
    for name in ("web", "worker-client", "worker-server", "migrate"):
        env = SERVICES[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://redis:")
        assert env["KSG_PRIVATE_DIR"] == "/data/private"


def test_a_reaper_settles_jobs_of_dead_workers_without_private_data():
    reaper = SERVICES["reaper"]
    assert reaper["command"][:3] == ["python", "manage.py", "ksg_reap"] and "--every" in reaper["command"]
    assert "private-data" not in volume_names("reaper")
    assert reaper["environment"]["DATABASE_URL"].startswith("postgres://")


def security_volume_table() -> dict[str, set[str]]:
    """docs/SECURITY.md's "Which volume holds what" table: volume -> the services it names."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md").read_text()
    section = text.split("## Which volume holds what", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): {name.strip() for name in cells[2].split(",")} for cells in rows}


def test_the_security_page_says_which_service_mounts_each_volume_as_compose_does():
    table = security_volume_table()
    assert set(table) == set(COMPOSE["volumes"])
    for volume, services in table.items():
        assert services == {name for name in SERVICES if volume in volume_names(name)}, volume


def test_client_only_artifacts_sit_on_the_private_volume_and_not_on_the_server_side():
    """jobs.artifacts puts the client-only area under KSG_PRIVATE_DIR: compose mounts it only
    with the private data, apart from the artifact volume the server worker reads."""
    for name in ("web", "worker-client", "worker-server"):
        env = SERVICES[name]["environment"]
        mounts = {spec.split(":")[1]: spec.split(":")[0] for spec in SERVICES[name]["volumes"]}
        assert mounts.get(env["KSG_ARTIFACT_DIR"]) == "artifacts"
        assert not env["KSG_ARTIFACT_DIR"].startswith(env["KSG_PRIVATE_DIR"] + "/")
    assert "/data/private" not in {spec.split(":")[1] for spec in SERVICES["worker-server"]["volumes"]}
