"""The harness of the dashboard's browser tests (tests/browser.sh runs them).

Every test gets its own rentabot (the binary in RENTABOT_BIN) on port 0, with a copy of
the lab of lab.yaml and the keys of auth.yaml, so that no test sees another's locks: the address is
read from the line the service logs once it listens (no polling), and the service is
killed when the test ends. The browser (Debian's chromium, driven by Playwright) is
started once per run; each test opens its pages in a fresh context.

With an auth config every read needs a key (README § Access control), and a browser
cannot send `X-API-Key` when it navigates or opens an EventSource: without one `/` is the
page minus the lab, asking for a key. Most tests play the part of a reverse proxy that
gives the viewer a readonly key: the harness adds it to the browser's GET requests that
carry no key of their own (Playwright's `extra_http_headers` would not do: it would
replace the key the page sends with its buttons). Writes go out exactly as the page sends
them, so an operator action's only credential is the key typed into `#api-key`.
`open(viewer_key=False)` is a browser with nothing in front of it.

On a failure the report carries, for every page the test opened, its URL, console
messages, uncaught errors and HTML, and the end of the service's log.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

HERE = Path(__file__).resolve().parent

VIEWER_KEY = "browser-viewer-key-0123456789"
USER_KEY = "browser-user-key-0123456789"
OPERATOR_KEY = "browser-operator-key-0123456789"
ADMIN_KEY = "browser-admin-key-0123456789"

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The flags of TOOLING.md's verified recipe: no sandbox (CI runs as root in a
# container), and nothing that reaches out to the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Bounds: how long the service may take to say it listens, how long one API call may take.
START_TIMEOUT_S = 30
API_TIMEOUT_S = 10
# What a failure report shows at most.
HTML_LIMIT = 30_000
LOG_LINES = 60

LISTENING = re.compile(r"listening on (http://\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Service:
    """One running rentabot, its address, its log, and the API as the tests call it."""

    def __init__(self, binary: str, descriptor: Path):
        self.descriptor = descriptor
        env = {k: v for k, v in os.environ.items() if not k.startswith("RENTABOT_")}
        self.proc = subprocess.Popen(
            [
                binary,
                "--config", str(descriptor),
                "--auth-config", str(HERE / "auth.yaml"),
                "--host", "127.0.0.1",
                "--port", "0",
                "--log-level", "warn,rentabot::app=info",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.log: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            # Drains the service's output for as long as it runs: the log of a failure
            # report, and the line that gives the address.
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                line = ANSI.sub("", line.rstrip("\n"))
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        self.url = ""
        while not self.url:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop()
                raise RuntimeError(
                    f"rentabot did not say it listens within {START_TIMEOUT_S} s:\n"
                    + "\n".join(self.log[-LOG_LINES:])
                )
            found = LISTENING.search(line)
            if found:
                self.url = found.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def call(self, method: str, path: str, key: str | None = None, body: dict | None = None):
        """`(status, JSON body)` of one API call; an error status is an answer, not an exception."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("X-API-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as refused:
            status, raw = refused.code, refused.read()
        text = raw.decode()
        try:
            return status, (json.loads(text) if text else None)
        except json.JSONDecodeError:
            return status, text

    def ok(self, method: str, path: str, key: str, body: dict | None = None, status: int = 200):
        """An API call that must succeed: its JSON body, or a failure naming the answer."""
        got, answer = self.call(method, path, key, body)
        assert got == status, f"{method} {path}: expected {status}, got {got}: {answer}"
        return answer

    def resource(self, rid: int) -> dict:
        return self.ok("GET", f"/api/v1/resources/{rid}", ADMIN_KEY)["resource"]


@pytest.fixture
def service(tmp_path):
    binary = os.environ.get("RENTABOT_BIN")
    if not binary:
        pytest.fail("RENTABOT_BIN must name the rentabot binary (tests/browser.sh sets it)")
    # A copy of the lab per test: a test may change the file and reload it.
    descriptor = tmp_path / "lab.yaml"
    descriptor.write_text((HERE / "lab.yaml").read_text())
    running = Service(binary, descriptor)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


class Dashboard:
    """Opens pages of the service's dashboard and keeps what a failure report shows."""

    def __init__(self, browser: Browser, service: Service):
        self.browser = browser
        self.service = service
        self.pages: list[tuple[Page, list[str]]] = []
        self.contexts = []

    def open(self, path: str = "/", javascript: bool = True, viewer_key: bool = True) -> Page:
        """A page of the dashboard in a fresh context; `viewer_key=False`: as a browser
        with nothing in front of it, whose reads carry only what the page sends."""
        context = self.browser.new_context(java_script_enabled=javascript)
        self.contexts.append(context)
        context.set_default_timeout(5_000)
        origin = self.service.url

        def add_viewer_key(route, request):
            headers = request.headers
            if (
                request.method in ("GET", "HEAD")
                and request.url.startswith(origin + "/")
                and "x-api-key" not in headers
                and "authorization" not in headers
            ):
                route.continue_(headers={**headers, "x-api-key": VIEWER_KEY})
            else:
                route.continue_()

        if viewer_key:
            context.route("**/*", add_viewer_key)
        page = context.new_page()
        notes: list[str] = []
        page.on("console", lambda m: notes.append(f"console.{m.type}: {m.text}"))
        page.on("pageerror", lambda e: notes.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: notes.append(f"request failed: {r.method} {r.url}: {r.failure}"))
        self.pages.append((page, notes))
        answer = page.goto(origin + path)
        assert answer is not None and answer.status == 200, (
            f"GET {path}: {answer.status if answer else 'no answer'}: {answer.text() if answer else ''}"
        )
        return page

    def report(self) -> list[tuple[str, str]]:
        sections = []
        for n, (page, notes) in enumerate(self.pages, 1):
            try:
                html = page.content()
                live = page.evaluate("document.body ? document.body.dataset.live : null")
            except Exception as e:  # the page may be gone: say so, keep the rest
                html, live = f"(no HTML: {e})", None
            if len(html) > HTML_LIMIT:
                html = html[:HTML_LIMIT] + f"\n… ({len(html) - HTML_LIMIT} more characters)"
            sections.append((
                f"page {n}: {page.url} (body data-live={live!r})",
                "\n".join(notes or ["(no console messages)"]) + "\n\n" + html,
            ))
        sections.append(("rentabot log (end)", "\n".join(self.service.log[-LOG_LINES:])))
        return sections

    def script_errors(self) -> list[str]:
        """Uncaught errors in the page's script and Content-Security-Policy refusals: a
        test that saw any fails, whatever it checked."""
        return [
            note
            for _, notes in self.pages
            for note in notes
            if note.startswith("uncaught:") or "Content Security Policy" in note
        ]

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def dashboard(request, browser, service):
    opened = Dashboard(browser, service)
    request.node.dashboard = opened
    yield opened
    errors = opened.script_errors()
    opened.close()
    if errors:
        pytest.fail("the page's script failed:\n" + "\n".join(errors), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    opened = getattr(item, "dashboard", None)
    if report.failed and report.when in ("call", "teardown") and opened is not None:
        for title, text in opened.report():
            report.sections.append((title, text))
