"""A real Celery worker process for the fault tests (`celery -A ksg_web worker`), with the
database, broker and directories the test gives it through its environment."""
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url_for_subprocess() -> str:
    """The test database the running test writes to, as a URL for another process."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


class Worker:
    """A worker on `queues` (comma-separated). pool="solo" runs tasks in the worker process
    itself; "prefork" (concurrency 1) is what compose.yaml runs: a child process per task."""

    def __init__(self, log_dir: Path, *, queues: str, database_url: str, redis_url: str, directories: dict,
                 pool: str = "solo", extra_env: dict | None = None):
        self.queues = queues
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
               "KSG_HEARTBEAT_SECONDS": "0.5", "PYTHONUNBUFFERED": "1",
               **{name: str(path) for name, path in directories.items()}, **(extra_env or {})}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.log = (Path(log_dir) / f"worker-{uuid.uuid4().hex[:6]}.log").open("w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ksg_web", "worker", "-Q", queues, "--pool", pool,
             "--concurrency", "1", "--prefetch-multiplier", "1", "--without-mingle", "--without-gossip",
             "-n", f"faults-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self, tail: int = 4000) -> str:
        self.log.seek(0)
        return self.log.read()[-tail:]
