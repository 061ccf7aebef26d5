"""Headless Chromium for the browser tests, driven by Playwright (sync API) with Debian's Chromium
as the browser: a page that records every Content-Security-Policy violation, console error and
uncaught exception, a Playwright trace of the test, and the helpers the tests share."""
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

ROOT = Path(__file__).resolve().parents[2]

# On a loaded machine (two cores, a suite beside) a page can take seconds to settle; a wait that
# only ends early when things go well costs nothing when they do.
TIMEOUT_MS = 60_000


def chromium_path() -> str:
    """Debian's Chromium (or another Chrome on PATH); Playwright's own browser builds are not used."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    pytest.fail("the browser tests need Chromium: apt-get install chromium")


def manage_shell(env: dict, code: str) -> str:
    """The last line `manage.py shell -c code` printed, run in another process with `env`."""
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=120)
    return done.stdout.strip().splitlines()[-1]


# Installed in every document before its own scripts: a Content-Security-Policy violation (a
# blocked inline script, eval, a foreign origin) becomes a console message the page records.
CSP_REPORTER = """document.addEventListener("securitypolicyviolation", (event) => {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + (event.blockedURI || "inline") +
                " at " + event.sourceFile + ":" + event.lineNumber);
});"""


@dataclass
class WatchedPage:
    """A Playwright page and what went wrong on it: CSP violations, console errors (Chromium's
    own, such as a failed load, included) and uncaught exceptions."""

    page: Page
    csp_violations: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if message.text.startswith("CSP violation") or "Content Security Policy" in message.text:
            self.csp_violations.append(message.text)  # the reporter's line, or Chromium's own for it
        else:
            self.console_errors.append(f"{message.text} ({message.location.get('url')})")

    def assert_clean(self) -> None:
        """Fails naming every CSP violation, console error and uncaught exception seen so far."""
        problems = {"CSP violations": self.csp_violations, "console errors": self.console_errors,
                    "page errors": self.page_errors}
        assert not any(problems.values()), problems


def wait_for_state(page: Page, state: str, until: str, arg=None) -> dict:
    """Polls `state`, a JavaScript function of `arg` returning what the page shows as an object
    `s`, until the JavaScript condition `until` on `s` holds; returns that `s`. A timeout fails
    with what the page showed last."""
    try:
        return page.wait_for_function(f"(arg) => {{ const s = ({state})(arg); return ({until}) && s; }}",
                                      arg=arg, polling=100).json_value()
    except PlaywrightTimeoutError:
        raise AssertionError(f"timed out waiting for {until}; the page shows {page.evaluate(state, arg)}") from None


def log_in_with_session(page: Page, base: str, session: str) -> None:
    """Logs the page's browser context in with a Django `sessionid` cookie for `base`."""
    page.context.add_cookies([{"name": "sessionid", "value": session, "url": base}])


@pytest.fixture()
def chromium_page(tmp_path) -> Iterator[WatchedPage]:
    """A page in a fresh headless Chromium (1280x900) with the CSP reporter installed and a trace
    recording; the test fails at teardown if the page reported a CSP violation, a console error
    or an uncaught exception. The trace (open it with `playwright show-trace`) and a screenshot
    of the last page are always written to the test's tmp_path, which pytest keeps. A test asks
    for it after `embedded_server`, so that the browser closes before the server stops."""
    trace, last_page = tmp_path / "playwright-trace.zip", tmp_path / "last-page.png"
    print(f"Playwright trace: {trace}; last page: {last_page}")  # shown with a failure's setup output
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(CSP_REPORTER)
        context.tracing.start(snapshots=True, screenshots=True)
        watched = WatchedPage(context.new_page())
        watched.page.on("console", watched._on_console)
        watched.page.on("pageerror", lambda error: watched.page_errors.append(f"{error.name}: {error.message}"))
        try:
            yield watched
        finally:
            try:
                watched.page.screenshot(path=last_page, full_page=True)
            except Error:  # a page that crashed or closed has nothing to show; the trace still does
                pass
            context.tracing.stop(path=trace)
            browser.close()
    watched.assert_clean()
