"""The run page in a real browser (headless Chromium driven by Playwright) against the embedded
server: the timeline, the epsilon chart with its target and limit lines, the loss chart, the live
feed and the connection indicator; then events written by another process reach the open page
(the stream's database poll), and a new stage gets its own stream."""
import json
import os

import httpx
import pytest
from playwright.sync_api import expect

from tests.ksg_web.test_embedded_smoke import embedded_server  # noqa: F401  (the server fixture)
from tests.support.browser import chromium_page, log_in_with_session, manage_shell, wait_for_state  # noqa: F401

pytestmark = pytest.mark.slow

SEED = """
import json
from datetime import timedelta
from django.utils import timezone
from jobs.models import Job
from jobs.services import job_event_record
from privacy.services import budget_reserve, user_create
from tests.privacy.factories import make_dataset

owner = user_create(username="olive", role="data_scientist", password="browser-test-password-1")
dataset = make_dataset(owner, name="clinic", epsilon_limit="10")
run = Job.objects.create(kind="run", owner=owner, dataset=dataset, status="running",
                         params={"baseline": "knowledgesg", "preset": "demo",
                                 "stages": {"dp_finetune": {"target_epsilon": 4.0}}})
job_event_record(job_id=run.pk, kind="status", payload={"status": "running", "stage": "dp_finetune"})
started = timezone.now() - timedelta(seconds=90)
dp = Job.objects.create(kind="dp_finetune", owner=owner, dataset=dataset, parent=run, status="succeeded",
                        started_at=started, finished_at=started + timedelta(seconds=60))
budget_reserve(job=dp, epsilon=4, actor=owner)
for step in (1, 2, 3):
    job_event_record(job_id=dp.pk, kind="epsilon", payload={"step": step, "epsilon": 0.8 * step, "target_epsilon": 4.0})
    job_event_record(job_id=dp.pk, kind="metric", payload={"step": step, "loss": 3.0 - 0.5 * step})
job_event_record(job_id=dp.pk, kind="status", payload={"status": "succeeded"})
generate = Job.objects.create(kind="generate", owner=owner, dataset=dataset, parent=run, status="running",
                              started_at=timezone.now())
job_event_record(job_id=generate.pk, kind="status", payload={"status": "running"})
job_event_record(job_id=generate.pk, kind="sample", payload={"stage": "generate", "index": 0,
                                                             "instruction": "What helps with a migraine?"})
print(json.dumps({"run": run.pk, "dp": dp.pk, "generate": generate.pk}))
"""

ADVANCE = """
import json
from jobs.models import Job
from jobs.services import job_event_record, job_finish_locked
ids = json.loads('{ids}')
generate = Job.objects.get(pk=ids["generate"])
job_event_record(job_id=generate.pk, kind="sample", payload={{"stage": "generate", "index": 1,
                                                              "instruction": "Is ibuprofen safe daily?"}})
job_finish_locked(generate, "succeeded")
run = Job.objects.get(pk=ids["run"])
filter_job = Job.objects.create(kind="filter", owner=run.owner, dataset=run.dataset, parent=run, status="running")
job_event_record(job_id=run.pk, kind="log", payload={{"message": "stage filter queued", "stage": "filter"}})
job_event_record(job_id=filter_job.pk, kind="sample", payload={{"stage": "filter", "index": 0, "kept": False,
    "reason": "pii", "instruction": "Call Dr. Smith at 555-0100"}})
print(filter_job.pk)
"""


PAGE_STATE = """() => {
  const epsilon = document.getElementById("run-epsilon-chart"), loss = document.getElementById("run-loss-chart");
  return {
    stream: document.getElementById("stream-state").textContent,
    timeline: [...document.querySelectorAll("#run-timeline tbody tr")].map((row) => row.dataset.kind || "-"),
    epsilonY: epsilon.data?.[0]?.y ?? [], lines: (epsilon.layout?.shapes || []).map((shape) => shape.y0),
    lossTraces: (loss.data || []).map((trace) => [trace.name, trace.y.length]),
    generated: [...document.querySelectorAll("#feed-generate li")].map((item) => item.textContent),
    verdicts: [...document.querySelectorAll("#feed-filter li")].map((item) => item.textContent),
  };
}"""


def test_the_run_page_draws_and_follows_a_run_live(embedded_server, chromium_page, tmp_path):  # noqa: F811
    base, server, log = embedded_server
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["KSG_DATA_DIR"] = str(tmp_path)
    ids = json.loads(manage_shell(env, SEED))
    client = httpx.Client(base_url=base, timeout=30)
    client.get("/accounts/login/")
    client.post("/accounts/login/", data={"username": "olive", "password": "browser-test-password-1",
                                          "csrfmiddlewaretoken": client.cookies["csrftoken"]},
                headers={"Referer": f"{base}/accounts/login/"})
    page = chromium_page.page
    log_in_with_session(page, base, client.cookies["sessionid"])

    page.goto(f"{base}/jobs/{ids['run']}/")
    state = wait_for_state(page, PAGE_STATE,
                           's.epsilonY.length === 3 && s.generated.length === 1 && s.stream === "live"')
    assert state["timeline"][:2] == ["dp_finetune", "generate"] and len(state["timeline"]) == 6
    assert state["epsilonY"] == [0.8, 1.6, 2.4000000000000004] and sorted(state["lines"]) == [4, 10]
    assert state["lossTraces"] == [["DP fine-tuning", 3]]
    assert state["generated"] == ["What helps with a migraine?"]

    manage_shell(env, ADVANCE.format(ids=json.dumps(ids)))  # another process: the page hears it by polling

    state = wait_for_state(page, PAGE_STATE, "s.verdicts.length === 1 && s.generated.length === 2")
    assert state["timeline"][:3] == ["dp_finetune", "generate", "filter"]
    assert state["generated"][0] == "Is ibuprofen safe daily?"
    assert state["verdicts"][0].startswith("personal data")
    expect(page.locator("#stream-state")).to_have_text("live")  # the run and its filter stage still stream
    chromium_page.assert_clean()
