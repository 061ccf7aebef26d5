"""The run report page in a real browser (headless Chromium driven by Playwright) against the
embedded server: its charts draw, each figure shows its 95% interval and n under it, an older
evaluation's figures say they have none, and no CSP violation, console error or page error."""
import json
import os

import httpx
import pytest

from tests.ksg_web.test_embedded_smoke import embedded_server  # noqa: F401  (the server fixture)
from tests.support.browser import chromium_page, log_in_with_session, manage_shell, wait_for_state  # noqa: F401

pytestmark = pytest.mark.slow

SEED = """
import json
from privacy.services import user_create
from tests.evaluation.test_report import evaluation_json, make_run
from tests.privacy.factories import make_dataset

owner = user_create(username="olive", role="data_scientist", password="browser-test-password-1")
dataset = make_dataset(owner, name="clinic", epsilon_limit="100")
run = make_run(owner, dataset, evaluation=evaluation_json())
older = make_run(owner, dataset, baseline="nonprivate", evaluation=evaluation_json(shift=0.6, intervals=False),
                 age_minutes=5)
print(json.dumps({"run": run.pk, "older": older.pk}))
"""

PAGE_STATE = """() => {
  const cell = (row, column) => document.querySelectorAll("#comparison tbody tr")[row]?.children[column];
  const interval = cell(0, 2)?.querySelector("small.interval");
  return {
    membershipBars: document.getElementById("chart-membership-loss").data?.length ?? 0,
    caption: document.querySelector("#chart-membership-loss").previousElementSibling.innerText,
    aucCell: cell(0, 2)?.innerText, olderAucCell: cell(1, 2)?.innerText,
    intervalDisplay: interval ? getComputedStyle(interval).display : null,
    tprNote: document.getElementById("tpr-at-low-fpr").innerText,
  };
}"""


def test_the_report_page_shows_each_figure_with_its_interval_in_a_browser(embedded_server, chromium_page,  # noqa: F811
                                                                          tmp_path):
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

    page.goto(f"{base}/jobs/{ids['run']}/report/")
    state = wait_for_state(page, PAGE_STATE, "s.membershipBars === 2")

    assert state["aucCell"] == "0.861\n[0.64, 1.00], n 6+6"  # the interval on its own line under the figure
    assert state["intervalDisplay"] == "block"
    assert state["olderAucCell"] == "1.000\nno interval (older evaluation)"
    assert state["caption"] == "Loss score (AUC 0.861 [0.64, 1.00], n 6+6)"
    assert "TPR at zero false positives" in state["tprNote"]
    chromium_page.assert_clean()
