"""Headless Chromium for the browser tests, driven over the DevTools protocol (no extra package):
start it, get a page, evaluate JavaScript on it and wait for conditions, see what it threw."""
import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

ROOT = Path(__file__).resolve().parents[2]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    pytest.fail("the browser tests need Chromium: apt-get install chromium (.ci/run does it)")


def manage_shell(env: dict, code: str) -> str:
    """The last line `manage.py shell -c code` printed, run in another process with `env`."""
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=120)
    return done.stdout.strip().splitlines()[-1]


# Installed in every document before its own scripts: a Content-Security-Policy violation (a
# blocked inline script, eval, a foreign origin) becomes a console message the test collects.
CSP_REPORTER = """document.addEventListener("securitypolicyviolation", (event) => {
  console.error("CSP violation: " + event.violatedDirective + " blocked " + (event.blockedURI || "inline") +
                " at " + event.sourceFile + ":" + event.lineNumber);
});"""


class Browser:
    """Just enough of the DevTools protocol: commands on one page, the exceptions it threw and
    the Content-Security-Policy violations it reported."""

    def __init__(self, socket):
        self.socket, self.ids, self.exceptions, self.csp_violations = socket, itertools.count(1), [], []

    async def send(self, method: str, **params):
        message_id = next(self.ids)
        await self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), timeout=30))
            if message.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(message["params"]["exceptionDetails"])
            if message.get("method") == "Runtime.consoleAPICalled":
                text = " ".join(str(arg.get("value", "")) for arg in message["params"]["args"])
                if text.startswith("CSP violation"):
                    self.csp_violations.append(text)
            if message.get("id") == message_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.evaluate("document.getElementById('stream-state')?.textContent")
                raise AssertionError(f"timed out waiting for {expression} (stream: {state}; errors: {self.exceptions})")
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def chromium_page(profile: Path, *, session: str | None = None, base: str | None = None):
    """A Browser on the first page of a new headless Chromium with its profile in `profile`,
    Runtime, Network, Page and DOM events on, logged in with the `session` cookie for `base` if
    given. Chromium is stopped on exit."""
    process = subprocess.Popen([chromium_path(), "--headless=new", "--no-sandbox", "--disable-gpu",
                                "--disable-background-networking", "--window-size=1280,900",
                                "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
        page_url = next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")
        async with websockets.connect(page_url, max_size=None) as socket:
            page = Browser(socket)
            for domain in ("Runtime", "Network", "Page", "DOM"):
                await page.send(f"{domain}.enable")
            await page.send("Page.addScriptToEvaluateOnNewDocument", source=CSP_REPORTER)
            if session:
                await page.send("Network.setCookie", name="sessionid", value=session, url=base)
            yield page
            assert page.csp_violations == [], page.csp_violations
    finally:
        process.terminate()
        process.wait(timeout=20)
