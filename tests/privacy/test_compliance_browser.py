"""The compliance dashboard in a real browser (headless Chromium driven by Playwright) against
the embedded server: the budget bars, the burn-down with its limit, the runs in flight and the
connection indicator; then a ledger change written by another process reaches the open
page (the feed's periodic re-read of the database), with no error on the page."""
import json
import os

import pytest
from playwright.sync_api import expect

from tests.ksg_web.test_embedded_smoke import embedded_server, login  # noqa: F401  (the server fixture)
from tests.support.browser import chromium_page, log_in_with_session, manage_shell, wait_for_state  # noqa: F401

pytestmark = pytest.mark.slow

SEED = """
import json
from jobs.models import Job
from privacy.services import budget_commit, budget_release, budget_reserve, user_create
from tests.privacy.factories import make_dataset, make_dp_job

owner = user_create(username="olive", role="data_scientist", password="browser-test-password-1")
clinic = make_dataset(owner, name="clinic", epsilon_limit="10")
make_dataset(owner, name="bank", epsilon_limit="5")
done = make_dp_job(owner, clinic)
budget_reserve(job=done, epsilon=2, actor=owner)
budget_commit(job=done, epsilon=1.5, delta=1e-5, mechanism={}, actor=owner)
budget_release(job=done, actor=owner)
Job.objects.filter(pk=done.pk).update(status="succeeded")
run = Job.objects.create(kind="run", owner=owner, dataset=clinic, status="running", params={"baseline": "dp_direct"})
stage = Job.objects.create(kind="dp_finetune", owner=owner, dataset=clinic, parent=run, status="running")
budget_reserve(job=stage, epsilon=3, actor=owner)
print(json.dumps({"clinic": clinic.pk, "run": run.pk, "stage": stage.pk}))
"""

SETTLE = """
import json
from jobs.models import Job
from jobs.services import job_finish_locked
from privacy.services import budget_settle
ids = json.loads('{ids}')
stage = Job.objects.get(pk=ids["stage"])
budget_settle(job=stage, epsilon=2.75, delta=1e-5, mechanism={{}}, actor=stage.owner)
job_finish_locked(Job.objects.get(pk=ids["run"]), "succeeded")
"""

PAGE_STATE = """(clinicId) => {
  const bars = document.getElementById("budget-chart"), burn = document.getElementById("burndown-chart");
  const row = document.getElementById("budget-row-" + clinicId);
  return {
    state: document.getElementById("live-state").dataset.state,
    bars: (bars.data || []).map((trace) => [trace.name, trace.y, trace.x]),
    burn: (burn.data || []).map((trace) => [trace.name, trace.y]),
    row: row ? [...row.cells].map((cell) => cell.textContent) : null,
    runs: [...document.querySelectorAll("#runs-table tbody tr")].map((tr) => tr.cells[0].textContent),
  };
}"""


def test_the_dashboard_draws_the_budgets_and_follows_the_ledger_live(  # noqa: F811
        embedded_server, chromium_page, tmp_path):
    base, server, log = embedded_server
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["KSG_DATA_DIR"] = str(tmp_path)
    ids = json.loads(manage_shell(env, SEED))
    page = chromium_page.page
    log_in_with_session(page, base, login(base).cookies["sessionid"])  # the first administrator: compliance included

    page.goto(f"{base}/compliance/")
    state = wait_for_state(page, PAGE_STATE, 's.state === "live" && s.bars.length && s.row', ids["clinic"])
    bars = {name: dict(zip(names, values)) for name, names, values in state["bars"]}
    assert bars["spent"] == {"bank": 0, "clinic": 1.5} and bars["reserved"]["clinic"] == 3
    assert bars["left"]["clinic"] == 5.5
    burn = dict((name, values) for name, values in state["burn"])
    assert burn["clinic"][:2] == [0, 1.5] and burn["clinic limit"] == [10, 10]
    assert state["row"][2:6] == ["10.000000", "1.500000", "3.000000", "5.500000"]
    assert state["runs"] == [str(ids["run"])]

    manage_shell(env, SETTLE.format(ids=json.dumps(ids)))  # another process: heard by the re-read

    state = wait_for_state(page, PAGE_STATE, 's.row && s.row[4] === "0.000000"', ids["clinic"])
    assert state["row"][3] == "4.250000" and state["row"][5] == "5.750000"
    assert dict((name, values) for name, values in state["burn"])["clinic"][:3] == [0, 1.5, 4.25]
    assert state["runs"] == ["No runs in flight."]
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    chromium_page.assert_clean()
