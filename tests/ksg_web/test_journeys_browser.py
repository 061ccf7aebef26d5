"""The two daily journeys, done in a real browser (headless Chromium over the DevTools protocol)
against the embedded server, through the forms a person uses:

- a data scientist logs in, uploads a dataset, sees its page, submits a self-test and watches its
  chart grow over the websocket;
- a compliance officer logs in, opens the dashboard, and sees the dataset's budget bar move when
  a job reserves epsilon on it (from another process, as a worker would).

Each page is saved as a PNG screenshot; with KSG_SCREENSHOT_DIR set (README: docs/screenshots)
they are written there, otherwise into the test's temporary directory."""
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ksg_web.test_embedded_smoke import ROOT, embedded_server  # noqa: F401  (the server fixture)
from tests.support.browser import Browser, chromium_page, manage_shell

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

BUDGET_ROW = """(() => {
  const row = [...document.querySelectorAll("tr[id^='budget-row-']")].find((tr) => tr.cells[0].textContent.includes("clinic"));
  const bars = document.getElementById("budget-chart");
  return {state: document.getElementById("live-state").dataset.state,
          row: row ? [...row.cells].map((cell) => cell.textContent.trim()) : null,
          reserved: (bars.data || []).filter((trace) => trace.name === "reserved").map((trace) => Object.fromEntries(trace.y.map((name, i) => [name, trace.x[i]])))[0] || null};
})()"""


def _screenshot_dir(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("KSG_SCREENSHOT_DIR") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_a_data_scientist_and_a_compliance_officer_do_their_day_in_the_browser(embedded_server, tmp_path):  # noqa: F811
    base, server, log = embedded_server
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["KSG_DATA_DIR"] = str(tmp_path)
    assert manage_shell(env, USERS) == "ok"
    upload = tmp_path / "clinic.jsonl"
    subprocess.run([sys.executable, "manage.py", "ksg_demo_data", "--domain", "medical", "--n", "40", "--seed", "3",
                    "--out", str(upload)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    shots = _screenshot_dir(tmp_path)

    asyncio.run(_journeys(base, tmp_path / "chromium", upload, shots, env))
    for name in ("dataset-new", "dataset-detail", "selftest", "run-new", "dashboard", "ledger"):
        png = (shots / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000, name


async def _open(page: Browser, url: str, ready: str = "true") -> None:
    await page.send("Page.navigate", url=url)
    await page.wait_for(f"document.readyState === 'complete' && location.href.startsWith({json.dumps(url)}) && ({ready})")


async def _fill(page: Browser, values: dict[str, str]) -> None:
    """Types values into inputs by id, as a person would, firing the input events."""
    for element_id, value in values.items():
        await page.evaluate(f"(() => {{ const e = document.getElementById({json.dumps(element_id)}); "
                            f"e.value = {json.dumps(value)}; e.dispatchEvent(new Event('input', {{bubbles: true}})); }})()")


async def _submit(page: Browser, form_selector: str, expect_path: str) -> None:
    await page.evaluate(f"document.querySelector({json.dumps(form_selector)}).requestSubmit()")
    await page.wait_for(f"document.readyState === 'complete' && new RegExp({json.dumps(expect_path)}).test(location.pathname)")


async def _screenshot(page: Browser, path: Path) -> None:
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(shot["data"]))


async def _log_in(page: Browser, base: str, username: str) -> None:
    await page.send("Network.clearBrowserCookies")
    await _open(page, f"{base}/accounts/login/", "!!document.getElementById('id_username')")
    await _fill(page, {"id_username": username, "id_password": PASSWORD})
    await _submit(page, "section.card form", r"^/(jobs|compliance)/")


async def _journeys(base: str, profile: Path, upload: Path, shots: Path, env: dict) -> None:
    async with chromium_page(profile) as page:
        await _data_scientist(page, base, upload, shots)
        await _compliance_officer(page, base, shots, env)
        assert page.exceptions == []
        await _inline_script_is_blocked(page)


async def _inline_script_is_blocked(page: Browser) -> None:
    """The Content-Security-Policy holds in the browser: a script injected into the page (what an
    XSS would do) does not run, and the violation is reported (chromium_page fails on others)."""
    assert page.csp_violations == []
    await page.evaluate("(() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
                        " document.body.appendChild(s); })()")
    deadline = time.monotonic() + 5
    while not page.csp_violations and time.monotonic() < deadline:
        await page.evaluate("0")  # reads the page's pending console messages into page.csp_violations
        await asyncio.sleep(0.1)
    assert await page.evaluate("window.injected === undefined")
    assert [v for v in page.csp_violations if "script-src" in v], page.csp_violations
    page.csp_violations.clear()


async def _data_scientist(page: Browser, base: str, upload: Path, shots: Path) -> None:
    await _log_in(page, base, "dana")
    await _open(page, f"{base}/datasets/new/", "!!document.getElementById('dataset-form')")
    document = await page.send("DOM.getDocument")
    file_input = await page.send("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#id_file")
    await page.send("DOM.setFileInputFiles", nodeId=file_input["nodeId"], files=[str(upload)])
    await _fill(page, {"id_name": "clinic", "id_epsilon_limit": "10"})
    await _screenshot(page, shots / "dataset-new.png")
    await _submit(page, "#dataset-form", r"^/datasets/\d+/$")
    records = await page.evaluate("document.getElementById('dataset-records').textContent")
    assert "40 (36 for training, 4 held out)" in " ".join(records.split()), records
    await _screenshot(page, shots / "dataset-detail.png")

    await _open(page, f"{base}/jobs/", "!!document.querySelector(\"form[action$='/submit/selftest/']\")")
    await _fill(page, {"id_steps": "12", "id_interval_seconds": "0.4"})
    await _submit(page, "form[action$='/submit/selftest/']", r"^/jobs/\d+/$")
    points = "(document.getElementById('metric-chart').data || [{y: []}])[0].y.length"
    first = await page.wait_for(f"{points} >= 2 && document.getElementById('stream-state').textContent === 'live' && {points}")
    grown = await page.wait_for(f"{points} > {first} && {points}")
    assert grown > first  # the chart grows while the job runs, over the websocket
    await page.wait_for("document.getElementById('job-status').textContent === 'succeeded'", timeout=30)
    assert await page.evaluate(points) == 12
    # the attempt counter follows the stream too (0 when the page loaded before the worker took it)
    assert await page.evaluate("document.getElementById('job-attempts').textContent") == "1"
    await _screenshot(page, shots / "selftest.png")

    await _open(page, f"{base}/jobs/runs/new/", "!!document.querySelector('form')")
    await _screenshot(page, shots / "run-new.png")


async def _compliance_officer(page: Browser, base: str, shots: Path, env: dict) -> None:
    await _log_in(page, base, "colin")
    await _open(page, f"{base}/compliance/", "!!document.getElementById('live-state')")
    before = await page.wait_for(f"(() => {{ const s = {BUDGET_ROW}; return s.state === 'live' && s.row && s; }})()")
    assert before["row"][2:6] == ["10.000000", "0.000000", "0.000000", "10.000000"], before

    await asyncio.to_thread(manage_shell, env, RESERVE)  # a job on the dataset reserves 3 epsilon

    after = await page.wait_for(f"(() => {{ const s = {BUDGET_ROW}; return s.row && s.row[4] === '3.000000' && s; }})()")
    assert after["row"][5] == "7.000000" and after["reserved"]["clinic"] == 3, after
    await _screenshot(page, shots / "dashboard.png")
    await _open(page, f"{base}/compliance/ledger/", "!!document.querySelector('table')")
    assert "reserve" in await page.evaluate("document.querySelector('main').textContent")
    await _screenshot(page, shots / "ledger.png")
