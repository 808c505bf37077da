"""Screenshots of the running ``make run`` UI for the README (``make screenshots``).

Logs in through the REST API (``POST /auth/token`` with the simple auth
manager's generated password), gives the token to a headless Chromium as the
UI's ``_token`` cookie over the DevTools protocol, opens each page, waits until
it shows what it should, and saves a PNG under ``docs/images/``:

- ``ui-dag-list.png``: the DAG list;
- ``ui-delivered-hour.png``: the latest succeeded ``events_export`` run (the
  hour it delivered), one mapped export task per client, named by client id.

Needs Debian's ``chromium`` (``apt-get install chromium``) and a stack started
by ``make run`` (same ``EVENTS_HOME`` and ``AIRFLOW__API__PORT``). Chromium gets a
throw-away profile, listens for DevTools on a loopback port only, and starts
with the flags that keep it off the network (no background networking,
component updates, sync).

    .venv/bin/python scripts/ui_screenshots.py [--url http://127.0.0.1:8080] [--out docs/images]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from devtools import demo_data  # noqa: E402

LOCAL = Path(os.environ.get("EVENTS_HOME", REPO / ".local")).resolve()
API_PORT = int(os.environ.get("AIRFLOW__API__PORT", "8080"))
#: Chromium flags: headless, no sandbox (root), and nothing that phones home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
#: Seconds to wait for Chromium's DevTools port and for a page to show its content.
START_TIMEOUT = 30.0
PAGE_TIMEOUT = 45.0


class ScreenshotError(RuntimeError):
    """A page did not show what was expected, or Chromium did not start (the message says which)."""


def api(base_url: str, path: str, token: str | None = None, body: dict[str, Any] | None = None) -> Any:
    """Call the Airflow REST API and return the decoded JSON.

    :param base_url: e.g. ``http://127.0.0.1:8080``.
    :param path: e.g. ``/api/v2/dags``.
    :param token: bearer token (none for ``/auth/token``).
    :param body: JSON body (makes it a POST).
    """
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=15) as resp:  # noqa: S310 - a loopback URL
        return json.loads(resp.read())


def login(base_url: str, home: Path, user: str = "admin") -> str:
    """Return a JWT for ``user`` (password from the simple auth manager's generated file).

    :param base_url: the API server.
    :param home: ``EVENTS_HOME`` (the password file is in ``airflow/``).
    :param user: the user name.
    """
    password_file = home / "airflow" / "simple_auth_manager_passwords.json.generated"
    password = json.loads(password_file.read_text())[user]
    return str(api(base_url, "/auth/token", body={"username": user, "password": password})["access_token"])


class Chromium:
    """A headless Chromium driven over the DevTools protocol (one page).

    :param binary: the chromium executable.
    :param width: window width in CSS pixels.
    :param height: window height.
    """

    def __init__(self, binary: str, width: int = 1440, height: int = 900) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="events-chromium-"))
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self.ws = self._connect()

    def _connect(self) -> Any:
        from websockets.sync.client import connect

        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ScreenshotError(f"chromium did not open its DevTools port within {START_TIMEOUT:.0f} s")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
        page = next(t for t in targets if t.get("type") == "page")
        # entered by hand (closed in close()): one connection for the life of this object
        return connect(page["webSocketDebuggerUrl"], max_size=None).__enter__()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=PAGE_TIMEOUT))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise ScreenshotError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    def text(self) -> str:
        """The page's visible text."""
        result = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
        return str(result.get("result", {}).get("value", ""))

    def shoot(self, url: str, expect: list[str], out: Path, *, size: tuple[int, int] = (1440, 860)) -> None:
        """Open ``url``, wait until its text contains every string of ``expect``, save a PNG.

        :param url: the page.
        :param expect: texts the page must show before the picture is taken.
        :param out: the PNG file.
        :param size: the viewport (width, height) in CSS pixels.
        :raises ScreenshotError: the text did not appear within :data:`PAGE_TIMEOUT` seconds.
        """
        width, height = size
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + PAGE_TIMEOUT
        while not all(e in self.text() for e in expect):
            if time.monotonic() > deadline:
                raise ScreenshotError(f"{url} did not show {expect} within {PAGE_TIMEOUT:.0f} s")
            time.sleep(0.5)
        time.sleep(1.5)  # let late requests (counts, icons) settle
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))
        print(f"wrote {out}")

    def close(self) -> None:
        """Stop Chromium and remove its profile."""
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def delivered_run(base_url: str, token: str) -> dict[str, Any]:
    """The latest succeeded ``events_export`` run with a data interval (a delivered hour).

    :raises ScreenshotError: none yet (wait for the catch-up runs of ``make run``).
    """
    runs = api(
        base_url, "/api/v2/dags/events_export/dagRuns?state=success&order_by=-logical_date&limit=10", token
    )
    for run in runs["dag_runs"]:
        if run.get("data_interval_start"):
            return dict(run)
    raise ScreenshotError("no succeeded events_export run yet: wait a few minutes after `make run` starts")


def main(argv: list[str] | None = None) -> int:
    """Take the screenshots; return the exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=f"http://127.0.0.1:{API_PORT}", help="the running UI")
    parser.add_argument("--home", type=Path, default=LOCAL, help="EVENTS_HOME of the running stack")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder for the PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium", help="chromium binary")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        token = login(base, args.home)
        run = delivered_run(base, token)
        browser = Chromium(args.chromium)
        try:
            browser.call("Network.enable")
            browser.call("Network.setCookie", name="_token", value=token, url=base + "/", httpOnly=True)
            browser.shoot(
                f"{base}/dags",
                ["events_attribution_sync", "events_export", "events_ingest", "events_maintenance"],
                args.out / "ui-dag-list.png",
                size=(1440, 1500),
            )
            run_url = f"{base}/dags/events_export/runs/{urllib.request.quote(run['dag_run_id'], safe='')}"
            clients = [c.client_id for c in demo_data.DEMO_CLIENTS]
            browser.shoot(run_url, ["Task Instances", *clients], args.out / "ui-delivered-hour.png")
        finally:
            browser.close()
    except (OSError, ScreenshotError, KeyError) as exc:
        print(f"ui_screenshots: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
