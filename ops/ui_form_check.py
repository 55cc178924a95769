"""Open a paused flow run in the Prefect UI with headless Chromium, press its Resume button, and keep what the form
shows: the page text (what the tests check) and a screenshot (the README's).

    .venv/bin/python -m ops.ui_form_check UI_URL FLOW_RUN_ID OUT_DIR

`ops/ui-check.sh` only loads pages; the ranking form opens behind a button, so this drives Chromium through its
DevTools protocol (a websocket: no browser automation package needed). Chromium: Debian's package
(`apt-get install -y chromium`).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from websockets.sync.client import connect

from ops.local_stack import free_port, wait_until

CLICK_RESUME = """(() => {
  const button = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Resume');
  if (button) { button.click(); return true; }
  return false;
})()"""


class Page:
    """One Chromium tab spoken to over the DevTools protocol."""

    def __init__(self, ws_url: str):
        self.ws = connect(ws_url, max_size=64 * 2**20)
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText : ''") or ""
                raise TimeoutError(f"{what} not shown within {timeout_s:.0f} s; the page shows:\n{text[:2000]}")
            time.sleep(0.5)


@contextlib.contextmanager
def headless_chromium(window: str = "1440,1800") -> Iterator[Page]:
    """A headless Chromium (its own temporary profile) and its first tab; the browser and its child processes are
    stopped on exit (a renderer still writing into the profile would make removing it fail)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise FileNotFoundError("no chromium found (apt-get install -y chromium)")
    port = free_port()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--remote-debugging-port={port}", f"--user-data-dir={profile}", f"--window-size={window}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            targets_url = f"http://127.0.0.1:{port}/json"
            wait_until(lambda: urllib.request.urlopen(targets_url, timeout=2).status == 200, "Chromium", 30, proc)
            target = next(t for t in json.load(urllib.request.urlopen(targets_url)) if t["type"] == "page")
            page = Page(target["webSocketDebuggerUrl"])
            page.call("Page.enable")
            try:
                yield page
            finally:
                page.ws.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: the browser and every child it started
            proc.wait(15)


def screenshot(page: Page, path: Path) -> None:
    """The whole page as a PNG."""
    shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def open_resume_form(ui_url: str, flow_run_id: str, out: Path, timeout_s: float = 90) -> str:
    """The text of the paused run's resume form; writes `resume-form.txt` and `resume-form.png` into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with headless_chromium() as page:
        page.call("Page.navigate", url=f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}")
        page.wait_for(CLICK_RESUME, "the Resume button", timeout_s)
        page.wait_for("document.body.innerText.includes('Prompt 1: ranking')", "the ranking form", timeout_s)
        time.sleep(1)  # let the form's markdown settle before the screenshot
        text = page.evaluate("document.body.innerText")
        screenshot(page, out / "resume-form.png")
        (out / "resume-form.txt").write_text(text, encoding="utf-8")
        return text


if __name__ == "__main__":
    print(open_resume_form(sys.argv[1], sys.argv[2], Path(sys.argv[3] if len(sys.argv) > 3 else "bench/out/ui")))
