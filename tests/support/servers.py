"""Throwaway Redis and PostgreSQL servers for the restart tests: each on a free port the test
picks, with its data in a temporary directory, so the machine's shared services are never
stopped. Both restart on the same port and keep their data, as a production restart does
(Redis with its append-only file, as compose.yaml runs it)."""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_port(port: int, *, up: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            listening = probe.connect_ex(("127.0.0.1", port)) == 0
        if listening == up:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} did not {'open' if up else 'close'} within {timeout} s")


class ThrowawayRedis:
    """redis-server on a free port, append-only file in `directory`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> "ThrowawayRedis":
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--save", "", "--logfile", str(self.directory / "redis.log")])
        _wait_port(self.port, up=True)
        return self

    def stop(self) -> None:
        """A clean shutdown (the append-only file is flushed); clients see their connections drop."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        _wait_port(self.port, up=False)

    def restart(self, *, down_seconds: float = 1.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


def _postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise AssertionError(f"{name} not found: install PostgreSQL's server binaries (Debian: postgresql)")
    return found


class ThrowawayPostgres:
    """A PostgreSQL cluster made with initdb in a temporary directory, run with pg_ctl on a free
    port, trust authentication for user postgres. As root, the server runs as the `postgres`
    system user (PostgreSQL refuses to run as root)."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="ksg-pg-"))
        self.port = free_port()
        self.data = self.directory / "data"
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            account = pwd.getpwnam(self._user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._run(_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth", "trust",
                  "--no-sync", "-E", "UTF8")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self._user, "--"] if self._user else []
        result = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if result.returncode:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def start(self) -> "ThrowawayPostgres":
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off"
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.directory / "log"),
                  "-w", "start")
        return self

    def stop(self) -> None:
        """A fast shutdown: every open connection is terminated, as in a restart or failover."""
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self, *, down_seconds: float = 1.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def remove(self) -> None:
        try:
            self.stop()
        except AssertionError:
            pass  # not running
        shutil.rmtree(self.directory, ignore_errors=True)
