"""Browser-test fixtures: the real app on loopback https, Debian's Chromium through Playwright,
and stand-ins for office.js and MSAL.js served in place of Microsoft's CDNs.

Nothing leaves the machine: requests to hosts other than loopback are aborted, and the two CDN
scripts are answered from ``tests/browser/*_standin.js``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, expect, sync_playwright
from werkzeug.serving import make_server

from sandbox.tls import CertPair

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# Screenshots go to test-artifacts/ (ignored by git) on every run; with UPDATE_SCREENSHOTS=1 they
# replace the committed ones in docs/screenshots/ that the README shows.
SCREENSHOTS = REPO / ("docs/screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1" else "test-artifacts")
SCREENSHOTS.mkdir(parents=True, exist_ok=True)
OFFICE_STANDIN = (HERE / "office_standin.js").read_text(encoding="utf-8")
MSAL_STANDIN = (HERE / "msal_standin.js").read_text(encoding="utf-8")
CHROMIUM = "/usr/bin/chromium"
# axe-core from npm (package.json; scripts/bootstrap.sh runs npm ci): injected into pages to check them.
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTH, HEIGHT = 320, 720
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}
# Reports CSP violations of every page (the pane and its dialogs) to the test.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (e) => {
  if (window.__reportCspViolation) {
    window.__reportCspViolation({directive: e.violatedDirective, blocked: e.blockedURI,
                                 source: e.sourceFile, line: e.lineNumber, page: location.href});
  }
});
"""


@dataclass
class LiveServer:
    """The real app served on https://localhost:<port> in a thread."""

    url: str
    app: Flask
    config: dict[str, Any]


@pytest.fixture
def serve_app(
    app_config: dict[str, Any], redis_client: redis.Redis, server_cert: CertPair
) -> Iterator[Callable[..., LiveServer]]:
    """Start the real app (``create_app``) on loopback https with settings overridden per test."""
    servers: list[Any] = []
    # One line per request from the test server would bury the failure output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    def start(**overrides: Any) -> LiveServer:
        from backend import create_app

        holder: dict[str, Flask] = {}

        def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            return holder["app"](environ, start_response)

        # The socket is bound first so PUBLIC_BASE_URL (OAuth callbacks, dialog URLs) names its real port.
        server = make_server("localhost", 0, wsgi, threaded=True, ssl_context=server_cert.server_context())
        url = f"https://localhost:{server.server_port}"
        config = {**app_config, "PUBLIC_BASE_URL": url, **overrides}
        holder["app"] = create_app(config)
        thread = threading.Thread(target=server.serve_forever, name=f"live:{server.server_port}", daemon=True)
        thread.start()
        servers.append((server, thread))
        return LiveServer(url=url, app=holder["app"], config=config)

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def live_server(serve_app: Callable[..., LiveServer]) -> LiveServer:
    """The app with the default test configuration (fakes for Salesforce and Microsoft)."""
    return serve_app()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (``playwright install`` is not used: no downloads here)."""
    # A missing browser fails the run (scripts/test installs it): a skipped browser test proves nothing.
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed: apt-get install chromium"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@dataclass
class Pane:
    """A browser context showing the task pane, with what went wrong in it collected."""

    context: BrowserContext
    page: Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[dict[str, Any]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)

    def open(self, fragment: str = "") -> Page:
        """Load taskpane.html and wait until it left the loading view."""
        self.page.goto(f"{self.base_url}/taskpane.html{fragment}")
        expect(self.page.locator("#view-loading")).to_be_hidden()
        return self.page

    def sign_in_dialog(self, trigger: Callable[[], None], username: str, password: str) -> None:
        """Press what opens the Salesforce dialog, then log in on the fake's page in that popup."""
        with self.context.expect_page() as popup_info:
            trigger()
        popup = popup_info.value
        popup.wait_for_load_state("domcontentloaded")
        expect(popup.locator("#username")).to_be_visible()
        popup.fill("#username", username)
        popup.fill("#password", password)
        # The pane closes the dialog as soon as the result arrives: do not wait on the popup after this.
        popup.click("#Login", no_wait_after=True)

    def login(self, username: str = "alice@acme.example", password: str = "alice-pw") -> None:
        """Log in to Salesforce through the dialog, as a person would."""
        button = self.page.get_by_role("button", name="Log in to Salesforce")
        self.sign_in_dialog(button.click, username, password)
        expect(self.page.locator("#app-header")).to_be_visible(timeout=15_000)

    def token(self) -> str | None:
        """The bearer token the pane keeps."""
        raw = self.page.evaluate("() => window.localStorage.getItem('sidebarSync.session')")
        return json.loads(raw)["token"] if raw else None

    def problems(self, allowed_statuses: tuple[int, ...] = ()) -> list[str]:
        """Console errors, uncaught exceptions and CSP violations (HTTP error statuses the test caused excepted)."""
        allowed = tuple(f"status of {status} " for status in allowed_statuses)
        errors = [e for e in self.console_errors if not (allowed and "Failed to load resource" in e
                                                        and any(a in e for a in allowed))]
        return [*errors, *self.page_errors, *(json.dumps(v) for v in self.csp_violations),
                *(f"external request: {u}" for u in self.external_requests)]

    def assert_clean(self, allowed_statuses: tuple[int, ...] = ()) -> None:
        """No console errors, no uncaught exceptions, no CSP violation, no request off the machine."""
        problems = self.problems(allowed_statuses)
        assert not problems, "\n".join(problems)


@pytest.fixture
def make_pane(browser: Browser) -> Iterator[Callable[..., Pane]]:
    """Open browser contexts at the pane's size with the Office and MSAL stand-ins."""
    contexts: list[BrowserContext] = []

    def make(
        server: LiveServer,
        office: dict[str, Any] | None = None,
        msal: dict[str, Any] | None = None,
        width: int = WIDTH,
        height: int = HEIGHT,
    ) -> Pane:
        context = browser.new_context(
            ignore_https_errors=True,  # our loopback servers use the per-session test CA
            viewport={"width": width, "height": height},
            service_workers="block",
        )
        contexts.append(context)
        pane = Pane(context=context, page=None, base_url=server.url)  # type: ignore[arg-type]

        def off_machine(route: Route) -> None:
            host = urlsplit(route.request.url).hostname or ""
            if host in LOOPBACK or route.request.url.startswith(("data:", "blob:", "about:")):
                route.continue_()
            else:
                pane.external_requests.append(route.request.url)
                route.abort()

        # Later routes win: the CDN stand-ins are matched before the catch-all.
        context.route("**/*", off_machine)
        context.route(
            "https://appsforoffice.microsoft.com/**",
            lambda route: route.fulfill(status=200, content_type="application/javascript", body=OFFICE_STANDIN),
        )
        # MSAL.js needs Outlook's NAA bridge, which a test browser has not: the vendored copy we serve
        # (and the CDN, should a deployment point there) is replaced by a stand-in, as office.js is.
        for msal_url in ("https://alcdn.msauth.net/**", "**/js/vendor/msal-browser-*.min.js"):
            context.route(
                msal_url,
                lambda route: route.fulfill(status=200, content_type="application/javascript", body=MSAL_STANDIN),
            )
        context.expose_function("__reportCspViolation", lambda v: pane.csp_violations.append(v))
        context.add_init_script(
            f"window.__OFFICE_STANDIN__ = {json.dumps(office or {})};"
            f"window.__MSAL_STANDIN__ = {json.dumps(msal or {})};" + CSP_LISTENER
        )

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                pane.console_errors.append(f"{message.text} @ {message.location.get('url', '')}")

        context.on("console", on_console)
        context.on("weberror", lambda error: pane.page_errors.append(str(error.error)))
        pane.page = context.new_page()
        return pane

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def pane(make_pane: Callable[..., Pane], live_server: LiveServer) -> Pane:
    """The task pane on the default live server, as Outlook on the web would frame it (320 px)."""
    return make_pane(live_server)


def axe_violations(page: Page, selector: str | None = None) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page (or within ``selector``), one dict per rule."""
    # A missing axe-core fails the test (scripts/bootstrap.sh installs it): a skipped check proves nothing.
    assert AXE.exists(), "axe-core is not installed: run npm ci (scripts/bootstrap.sh does)"
    # Evaluated through the DevTools protocol, so the page's CSP (no inline script) does not apply.
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result: list[dict[str, Any]] = page.evaluate(
        """async ([selector, tags]) => {
             const context = selector ? document.querySelector(selector) : document;
             const report = await window.axe.run(context, {runOnly: {type: "tag", values: tags}});
             return report.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                                   nodes: v.nodes.map((n) => n.target.join(" "))}));
           }""", [selector, AXE_TAGS])
    return result
