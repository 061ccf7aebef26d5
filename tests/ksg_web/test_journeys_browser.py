"""The two daily journeys, done in a real browser (headless Chromium driven by Playwright) against
the embedded server, through the forms a person uses:

- a data scientist logs in, uploads a dataset, sees its page, submits a self-test and watches its
  chart grow over the websocket;
- a compliance officer logs in, opens the dashboard, and sees the dataset's budget bar move when
  a job reserves epsilon on it (from another process, as a worker would).

Each page is saved as a PNG screenshot; with KSG_SCREENSHOT_DIR set (README: docs/screenshots)
they are written there, otherwise into the test's temporary directory."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.ksg_web.test_embedded_smoke import ROOT, embedded_server  # noqa: F401  (the server fixture)
from tests.support.browser import WatchedPage, chromium_page, manage_shell, wait_for_state  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

PASSWORD = "journey-password-1"
USERS = f"""
from privacy.services import user_create
user_create(username="dana", role="data_scientist", password="{PASSWORD}")
user_create(username="colin", role="compliance_officer", password="{PASSWORD}")
print("ok")
"""

RESERVE = """
import json
from jobs.models import Job
from privacy.models import PrivateDataset
from privacy.services import budget_reserve
dataset = PrivateDataset.objects.get(name="clinic")
job = Job.objects.create(kind="dp_finetune", owner=dataset.owner, dataset=dataset, status="running")
budget_reserve(job=job, epsilon=3, actor=dataset.owner)
print(job.pk)
"""

BUDGET_ROW = """() => {
  const row = [...document.querySelectorAll("tr[id^='budget-row-']")].find((tr) => tr.cells[0].textContent.includes("clinic"));
  const bars = document.getElementById("budget-chart");
  return {state: document.getElementById("live-state").dataset.state,
          row: row ? [...row.cells].map((cell) => cell.textContent.trim()) : null,
          reserved: (bars.data || []).filter((trace) => trace.name === "reserved").map((trace) => Object.fromEntries(trace.y.map((name, i) => [name, trace.x[i]])))[0] || null};
}"""

# The self-test's page: the stream indicator (job_stream.js: connecting, live, reconnecting,
# finished), the job's status and how many points the metric chart has.
SELFTEST = """() => ({
  stream: document.getElementById("stream-state").textContent,
  status: document.getElementById("job-status").textContent,
  points: document.getElementById("metric-chart").data?.[0]?.y.length ?? 0,
})"""



def _screenshot_dir(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("KSG_SCREENSHOT_DIR") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_a_data_scientist_and_a_compliance_officer_do_their_day_in_the_browser(  # noqa: F811
        embedded_server, chromium_page, tmp_path):
    base, server, log = embedded_server
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["KSG_DATA_DIR"] = str(tmp_path)
    assert manage_shell(env, USERS) == "ok"
    upload = tmp_path / "clinic.jsonl"
    subprocess.run([sys.executable, "manage.py", "ksg_demo_data", "--domain", "medical", "--n", "40", "--seed", "3",
                    "--out", str(upload)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    shots = _screenshot_dir(tmp_path)

    _data_scientist(chromium_page.page, base, upload, shots)
    _compliance_officer(chromium_page.page, base, shots, env)
    chromium_page.assert_clean()
    _inline_script_is_blocked(chromium_page)
    for name in ("dataset-new", "dataset-detail", "selftest", "run-new", "dashboard", "ledger"):
        png = (shots / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name


def _screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=path, full_page=True)


def _log_in(page: Page, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/accounts/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/(jobs|compliance)/"))


def _inline_script_is_blocked(watched: WatchedPage) -> None:
    """The Content-Security-Policy holds in the browser: a script injected into the page (what an
    XSS would do) does not run, and the violation is reported (the page fixture fails on others)."""
    page = watched.page
    with page.expect_console_message(lambda message: message.text.startswith("CSP violation")) as reported:
        page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
                      " document.body.appendChild(s); }")
    assert page.evaluate("() => window.injected === undefined")
    assert "script-src" in reported.value.text, reported.value.text
    assert [v for v in watched.csp_violations if "script-src" in v], watched.csp_violations
    watched.csp_violations.clear()


def _data_scientist(page: Page, base: str, upload: Path, shots: Path) -> None:
    _log_in(page, base, "dana")
    page.goto(f"{base}/datasets/new/")
    page.locator("#id_file").set_input_files(upload)
    page.locator("#id_name").fill("clinic")
    page.locator("#id_epsilon_limit").fill("10")
    _screenshot(page, shots / "dataset-new.png")
    page.get_by_role("button", name="Register the dataset").click()
    expect(page).to_have_url(re.compile(r"/datasets/\d+/$"))
    expect(page.locator("#dataset-records")).to_contain_text("40 (36 for training, 4 held out)")
    _screenshot(page, shots / "dataset-detail.png")

    page.goto(f"{base}/jobs/")
    selftest = page.locator("form[action$='/submit/selftest/']")
    selftest.locator("#id_steps").fill("12")
    selftest.locator("#id_interval_seconds").fill("0.4")
    selftest.get_by_role("button", name="Start self-test").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
    _selftest_streams(page)
    _screenshot(page, shots / "selftest.png")

    page.goto(f"{base}/jobs/runs/new/")
    expect(page.locator("#run-form")).to_be_visible()
    _screenshot(page, shots / "run-new.png")


def _selftest_streams(page: Page) -> None:
    """The job page follows the self-test over its websocket. On a busy machine the job may have
    finished before the page attached: the stream then replays every event and shows `finished`.
    Either way the page ends with the job's whole result; the chart growing is checked only when
    the page caught the job running."""
    seen = wait_for_state(page, SELFTEST, '(s.stream === "live" && s.points > 0) || s.stream === "finished"')
    if seen["stream"] == "live" and seen["status"] == "running" and seen["points"] < 12:
        grown = wait_for_state(page, SELFTEST, f"s.points > {seen['points']}")
        assert grown["points"] > seen["points"]  # the chart grows while the job runs, over the websocket

    expect(page.locator("#stream-state")).to_have_text("finished")  # the terminal status ended the stream
    expect(page.locator("#job-status")).to_have_text("succeeded")
    assert page.evaluate(SELFTEST)["points"] == 12
    # the attempt counter follows the stream too (0 when the page loaded before the worker took it)
    expect(page.locator("#job-attempts")).to_have_text("1")


def _compliance_officer(page: Page, base: str, shots: Path, env: dict) -> None:
    _log_in(page, base, "colin")
    page.goto(f"{base}/compliance/")
    before = wait_for_state(page, BUDGET_ROW, "s.state === 'live' && s.row")
    assert before["row"][2:6] == ["10.000000", "0.000000", "0.000000", "10.000000"], before

    manage_shell(env, RESERVE)  # a job on the dataset reserves 3 epsilon, from another process

    after = wait_for_state(page, BUDGET_ROW, "s.row && s.row[4] === '3.000000'")
    assert after["row"][5] == "7.000000" and after["reserved"]["clinic"] == 3, after
    _screenshot(page, shots / "dashboard.png")
    page.goto(f"{base}/compliance/ledger/")
    expect(page.locator("main")).to_contain_text("reserve")
    _screenshot(page, shots / "ledger.png")
