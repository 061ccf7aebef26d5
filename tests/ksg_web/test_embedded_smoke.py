"""The embedded server as a user starts it: a subprocess on a free port, with SQLite, an
in-process Celery worker and the in-memory channel layer; log in, run a selftest, watch it live."""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "smoke-test-password-1"

pytestmark = pytest.mark.slow


@pytest.fixture()
def embedded_server(tmp_path, request):
    """(base URL, process, log) of `manage.py ksg_embedded` on a free port with its data in
    tmp_path; a test parametrizes it indirectly with a dict of extra environment variables."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update({"KSG_DATA_DIR": str(tmp_path), "KSG_ADMIN_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1",
                **getattr(request, "param", {})})
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    port = free_port()
    log = (tmp_path / "server.log").open("w+")
    # Ctrl-C (SIGINT) is how a user stops it; a runner started in the background (nohup, &) passes
    # SIGINT on ignored, so the child gets the default disposition back before it starts.
    server = subprocess.Popen(
        [sys.executable, "manage.py", "ksg_embedded", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    base = f"http://localhost:{port}"
    deadline = time.monotonic() + 180  # a loaded machine (a demo run beside the suite) starts it slowly
    while True:
        try:
            httpx.get(f"{base}/accounts/login/", timeout=2)
            break
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"embedded server did not come up:\n{log.read()}")
            time.sleep(0.2)
    yield base, server, log
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        raise


def login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=60)
    client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        data={"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": client.cookies["csrftoken"]},
        headers={"Referer": f"{base}/accounts/login/"},
    )
    assert response.status_code == 302, response.text[:500]
    return client


async def watch(base: str, job_id: int, session: str, last_seq: int = 0) -> list[dict]:
    url = f"{base.replace('http', 'ws')}/ws/jobs/{job_id}/?last_seq={last_seq}"
    headers = {"Cookie": f"sessionid={session}", "Origin": base}
    events = []
    async with websockets.connect(url, additional_headers=headers) as socket_:
        while not (events and events[-1]["kind"] == "status" and events[-1]["payload"]["status"] == "succeeded"):
            events.append(json.loads(await asyncio.wait_for(socket_.recv(), timeout=30)))
    return events


def test_embedded_server_runs_a_selftest_that_streams_live(embedded_server):
    base, server, log = embedded_server
    log.seek(0)
    assert f"Serving at {base}/" in log.read()
    client = login(base)

    response = client.post(
        "/jobs/submit/selftest/",
        data={"steps": "8", "interval_seconds": "0.2", "fail_at_step": "0", "csrfmiddlewaretoken": client.cookies["csrftoken"]},
        headers={"Referer": f"{base}/jobs/"},
    )
    assert response.status_code == 302
    job_id = int(re.fullmatch(r"/jobs/(\d+)/", response.headers["Location"]).group(1))
    page = client.get(f"/jobs/{job_id}/")
    assert page.status_code == 200 and "/static/vendor/plotly.min.js" in page.text
    assert client.get("/static/vendor/plotly.min.js").status_code == 200
    assert client.get("/static/js/job_stream.js").status_code == 200

    events = asyncio.run(watch(base, job_id, client.cookies["sessionid"]))

    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert [e["payload"]["step"] for e in events if e["kind"] == "metric"] == list(range(1, 9))
    resumed = asyncio.run(watch(base, job_id, client.cookies["sessionid"], last_seq=events[-4]["seq"]))
    assert resumed == events[-3:]
    assert client.get(f"/jobs/{job_id}/events/").json()["status"] == "succeeded"


def test_embedded_server_refuses_an_anonymous_websocket(embedded_server):
    base, _, _ = embedded_server

    async def connect():
        async with websockets.connect(f"{base.replace('http', 'ws')}/ws/jobs/1/", additional_headers={"Origin": base}):
            pass

    with pytest.raises(websockets.exceptions.InvalidStatus):
        asyncio.run(connect())
