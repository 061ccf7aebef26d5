"""Soak: three runs in a row submitted through the embedded server's web form, its reaper thread
looking every second with a heartbeat timeout shorter than each run's DP stage. All three
succeed, and the ledger adds up: every stage-1 job reserved, committed and released, nothing is
left reserved, and the budget's spent epsilon is the sum of the commits."""
import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

from tests.ksg_web.test_embedded_smoke import ROOT, embedded_server, login  # noqa: F401  (the server fixture)
from tests.support.tiny_model import tiny_model_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

HEARTBEAT_TIMEOUT = 1.5  # seconds: each run's stage 1 trains for several times this
SERVER_ENV = {"KSG_HEARTBEAT_SECONDS": "0.25", "KSG_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
              "KSG_REAPER_SECONDS": "1"}
KNOBS = {"dp_finetune__steps": 16, "dp_finetune__logical_batch_size": 8, "dp_finetune__physical_batch_size": 8,
         "dp_finetune__max_length": 48, "evaluate__max_records": 8, "evaluate__reconstruction_targets": 3,
         "evaluate__candidate_set_size": 5, "evaluate__generation_records": 2, "evaluate__max_new_tokens": 8,
         "evaluate__canary_references": 20, "evaluate__max_length": 64,
         "evaluate__sequential_looks": 1}  # caps of 2-3 items: one look (a cap must hold 2^(looks-1))

LEDGER = """
import json
from privacy.models import LedgerEntry, PrivateDataset
from privacy.selectors import dataset_balance
dataset = PrivateDataset.objects.get(name="clinic")
balance = dataset_balance(dataset=dataset)
entries = [[entry.job_id, entry.kind, str(entry.epsilon)] for entry in LedgerEntry.objects.filter(budget__dataset=dataset).order_by("pk")]
print(json.dumps({"spent": str(balance.spent), "reserved": str(balance.reserved), "entries": entries}))
"""


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.parametrize("embedded_server", [SERVER_ENV], indirect=True)
def test_three_runs_from_the_web_form_outlast_the_heartbeat_timeout_and_the_ledger_adds_up(embedded_server, tmp_path):  # noqa: F811
    base, server, log = embedded_server
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env["KSG_DATA_DIR"] = str(tmp_path)
    _manage(env, "ksg_demo_data", "--domain", "medical", "--n", "60", "--seed", "3", "--out", str(tmp_path / "clinic.jsonl"))
    _manage(env, "ksg_dataset_add", str(tmp_path / "clinic.jsonl"), "--name", "clinic", "--epsilon-limit", "20",
            "--owner", "admin")
    records = [json.loads(line) for line in (tmp_path / "clinic.jsonl").read_text().splitlines()]
    model_dir = tiny_model_dir(tmp_path / "tiny", [r["instruction"] + " " + r["response"] for r in records])
    client = login(base)
    form = client.get("/jobs/runs/new/")
    dataset_id = re.search(r'<option value="(\d+)"[^>]*>\s*clinic', form.text).group(1)

    runs = []
    for _ in range(3):
        response = client.post("/jobs/runs/new/", headers={"Referer": f"{base}/jobs/runs/new/"}, data={
            "csrfmiddlewaretoken": client.cookies["csrftoken"], "dataset": dataset_id, "preset": "demo",
            "baseline": "dp_direct", "domain": "medical", "target_epsilon": "2", "base_model": str(model_dir),
            "professional_model": str(model_dir), **KNOBS})
        assert response.status_code == 302, response.text[-3000:]
        run_id = int(re.fullmatch(r"/jobs/(\d+)/", response.headers["Location"]).group(1))
        runs.append((run_id, _finished(client, run_id, log)))

    for run_id, state in runs:
        assert state["status"] == "succeeded", (run_id, state, _tail(log))
    log.seek(0)
    assert "reaped job" not in log.read()  # nothing was taken for lost
    ledger = json.loads(_manage(env, "shell", "-c", LEDGER).strip().splitlines()[-1])
    by_job: dict[int, list[str]] = {}
    for job_id, kind, _ in ledger["entries"]:
        by_job.setdefault(job_id, []).append(kind)
    assert list(by_job.values()) == [["reserve", "commit", "release"]] * 3, ledger
    commits = sum(float(epsilon) for _, kind, epsilon in ledger["entries"] if kind == "commit")
    assert float(ledger["reserved"]) == 0 and float(ledger["spent"]) == pytest.approx(commits, abs=1e-6)
    assert 0 < commits <= 6


def _finished(client: httpx.Client, run_id: int, log, timeout: float = 300) -> dict:
    """The run's state from its events endpoint once it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/jobs/{run_id}/events/").json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            return state
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not end within {timeout} s\n{_tail(log)}")


def _tail(log) -> str:
    log.seek(0)
    return log.read()[-4000:]
