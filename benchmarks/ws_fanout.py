"""N websocket clients on one job's stream, through daphne and the Redis channel layer (the
distributed mode): delivery latency from event write to client receipt, and loss.

A throwaway PostgreSQL database is created on the server of --database-url (dropped after),
daphne serves the platform from it with REDIS_URL set, N clients connect to /ws/jobs/<id>/ with
a logged-in session, and a writer in another process records --events events at --rate per
second through jobs.services.job_event_record (each payload carries the wall time just before
the write). Each client measures receipt time minus that time. Loss is the count of events a
client never received; the stream's contract (database backlog on reconnect, periodic re-read)
makes it zero.

    .venv/bin/python benchmarks/ws_fanout.py                      # 10, 50 and 200 clients
    .venv/bin/python benchmarks/ws_fanout.py --clients 50 --events 200 --rate 20
"""
import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ksg_web.settings")

from ledger import _admin_sql, _with_database  # noqa: E402  (benchmarks/ledger.py: the throwaway database)

SETUP = """
import json
from django.test import Client
from jobs.models import Job
from privacy.services import user_create
user = user_create(username="watcher", role="data_scientist", password="bench-password-1")
job = Job.objects.create(kind="selftest", owner=user, status="running", params={}, celery_task_id="bench")
client = Client()
client.force_login(user)
print(json.dumps({"job": job.pk, "session": client.cookies["sessionid"].value}))
"""

WRITER = """
import sys, time
from jobs.services import job_event_record
job_id, events, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
for index in range(events):
    job_event_record(job_id=job_id, kind="metric", payload={"step": index + 1, "sent_at": time.time()})
    time.sleep(1 / rate)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def _client(url: str, headers: dict, events: int, latencies: list[float], ready: asyncio.Event,
                  connected: list[int], received: list[int]) -> None:
    import websockets

    async with websockets.connect(url, additional_headers=headers, open_timeout=60, max_queue=None) as stream:
        connected.append(1)
        if len(connected) == received[0]:
            ready.set()
        seen = 0
        deadline = time.monotonic() + 120
        while seen < events and time.monotonic() < deadline:
            try:
                message = json.loads(await asyncio.wait_for(stream.recv(), timeout=max(0.1, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                break
            if message["kind"] == "metric" and "sent_at" in message["payload"]:
                latencies.append(time.time() - message["payload"]["sent_at"])
                seen += 1
        received.append(seen)


async def _measure(base: str, job_id: int, session: str, clients: int, events: int, rate: float, env: dict) -> dict:
    url = f"{base.replace('http', 'ws')}/ws/jobs/{job_id}/?last_seq=0"
    headers = {"Cookie": f"sessionid={session}", "Origin": base}
    latencies: list[float] = []
    ready, connected, received = asyncio.Event(), [], [clients]
    tasks = [asyncio.create_task(_client(url, headers, events, latencies, ready, connected, received))
             for _ in range(clients)]
    await asyncio.wait_for(ready.wait(), timeout=120)
    writer = await asyncio.create_subprocess_exec(sys.executable, "-c", "import django; django.setup(); " + "exec(open(0).read())",
                                                  str(job_id), str(events), str(rate), cwd=ROOT, env=env,
                                                  stdin=subprocess.PIPE)
    await writer.communicate(WRITER.encode())
    await asyncio.gather(*tasks)
    counts = received[1:]
    return {"latencies": latencies, "lost": sum(events - count for count in counts), "clients": len(counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second")
    args = parser.parse_args()

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}, {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{args.events} events at {args.rate}/s per run; daphne + channels_redis + PostgreSQL")
    print("| clients | deliveries | p50 ms | p95 ms | max ms | lost |")
    print("|---:|---:|---:|---:|---:|---:|")
    for clients in args.clients:
        name = f"ksg_bench_ws_{os.getpid()}_{clients}"
        _admin_sql(args.database_url, f'CREATE DATABASE "{name}"')
        port = _free_port()
        env = {**os.environ, "DATABASE_URL": _with_database(args.database_url, name), "REDIS_URL": args.redis_url,
               "KSG_DATA_DIR": str(ROOT / "data" / "bench-ws"), "PYTHONUNBUFFERED": "1"}
        server = None
        (ROOT / "data" / "bench-ws").mkdir(parents=True, exist_ok=True)
        log = (ROOT / "data" / "bench-ws" / "daphne.log").open("w")
        try:
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            ids = json.loads(subprocess.run([sys.executable, "manage.py", "shell", "-c", SETUP], cwd=ROOT, env=env,
                                            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                                       "ksg_web.asgi:application"], cwd=ROOT, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
            base = f"http://localhost:{port}"
            _wait_for(base)
            result = asyncio.run(_measure(base, ids["job"], ids["session"], clients, args.events, args.rate, env))
            ms = [1000 * value for value in result["latencies"]]
            print(f"| {clients} | {len(ms)} | {statistics.median(ms):.1f} | {_percentile(ms, 0.95):.1f} | {max(ms):.1f} "
                  f"| {result['lost']} |", flush=True)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
            _admin_sql(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _wait_for(base: str) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/accounts/login/", timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("daphne did not come up")
            time.sleep(0.2)


if __name__ == "__main__":
    main()
