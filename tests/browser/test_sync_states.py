"""Sync settings never contradict themselves: every visible status line agrees with ``GET /api/sync``.

The walk a newcomer takes: connect Exchange, pause, resume, Sync now, deactivate, connect
Microsoft 365; at every step each line the pane shows is checked against the state the API reports.
The Exchange and Microsoft 365 copies of the mailbox carry the same Message-ID, so it is logged once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from sandbox.harness.exchange import ADDRESS, PASSWORD, ExchangeHarness
from sandbox.salesforce_rest import data_of
from sandbox.tls import TestCA
from tests.browser.conftest import LiveServer, Pane
from tests.browser.test_sync_exchange import fill_exchange
from tests.browser.test_sync_microsoft import connect_microsoft, run_jobs
from tests.conftest import RunningFake

pytestmark = pytest.mark.browser

LINES = ("#settings-state-label", "#settings-mailbox", "#exchange-status", "#microsoft-status", "#controls-status",
         "#run-progress-text", "#next-run", "#connect-intro", "#interval-text", "#settings-not-activated")
# Words that claim a state; a line may say them only in that state.
CLAIMS = {
    "running": ("Sync is running", "A run is queued", "A run is in progress", "Sync resumed", "Sync started"),
    "paused": ("Sync is paused", "while sync is paused"),
    "deactivated": ("Sync is deactivated",),
    "not_activated": ("Sync is not activated",),
}


@pytest.fixture
def both(serve_app: Callable[..., LiveServer], ews: ExchangeHarness, fake_graph: RunningFake,
         fake_microsoft: RunningFake) -> LiveServer:
    """The app reaching the fake Exchange server and the fake Graph, Alice in both."""
    fake_microsoft.state.add_user(ADDRESS)
    fake_graph.state.mailbox(ADDRESS)
    return serve_app(GRAPH_URL=fake_graph.url, **ews.settings_overrides())


def contradictions(page: Page, sync: dict[str, Any]) -> list[str]:
    """What the visible lines say that the API's state does not."""
    state = sync["state"]
    found: list[str] = []
    for selector in LINES:
        line = page.locator(selector)
        if not line.is_visible():
            continue
        text = line.inner_text().strip()
        for claimed, words in CLAIMS.items():
            if claimed != state and any(w in text for w in words):
                found.append(f"{selector} says {text!r} while the state is {state}")
        if "Connected to" in text and selector in ("#exchange-status", "#microsoft-status"):
            section = selector[1:].split("-")[0]
            if sync["provider"] != section or state not in ("running", "paused", "disabled_error"):
                found.append(f"{selector} says {text!r} while the connection is {sync['provider']} ({state})")
    label = page.locator("#settings-state-label").inner_text()
    if not label.startswith(sync["state_label"]):
        found.append(f"the state line says {label!r}, the API {sync['state_label']!r}")
    if sync["mailbox"] and state in ("running", "paused"):
        if sync["mailbox"] not in page.locator("#settings-mailbox").inner_text():
            found.append("the mailbox line does not name the synced mailbox")
    if state != "running" and page.locator("#run-progress").is_visible():
        found.append("a run is said to be on its way while sync is not running")
    if sync["job"] is None and page.locator("#run-progress").is_visible():
        found.append("a run is said to be on its way, the API has none")
    # The home view, rendered from the same state (shown when the person goes back).
    home = page.locator("#home-state-label").text_content() or ""
    banner = page.locator("#home-not-activated-title").text_content() or ""
    if state in ("running", "paused") and not home.startswith(sync["state_label"]):
        found.append(f"home says {home!r}")
    if state in ("not_activated", "deactivated") and banner != sync["state_label"]:
        found.append(f"the home banner says {banner!r}")
    return found


def agree(page: Page, server: LiveServer, token: str, ca: TestCA, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until every visible line agrees with GET /api/sync; returns the sync state."""
    deadline = time.monotonic() + timeout
    while True:
        sync = requests.get(f"{server.url}/api/sync", headers={"Authorization": f"Bearer {token}"},
                            verify=ca.ca_path, timeout=10).json()
        problems = contradictions(page, sync)
        if not problems:
            return sync
        if time.monotonic() > deadline:
            raise AssertionError("\n".join(problems))
        page.wait_for_timeout(200)


def settle(page: Page, server: LiveServer) -> None:
    """Run the queued jobs and wait until the pane saw the run end."""
    run_jobs(server)
    expect(page.locator("#run-progress")).to_be_hidden(timeout=20_000)


def test_every_status_line_follows_the_one_state(
    both: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness, fake_graph: RunningFake,
    fake_salesforce: RunningFake, ca: TestCA,
) -> None:
    data = data_of(fake_salesforce.state)
    data.add_contact("carol@customer.example", "Customer")
    when = datetime.now(tz=UTC) - timedelta(hours=2)
    for add in (ews.add_email, lambda *a, **k: fake_graph.state.add_message(ADDRESS, *a, **k)):
        add("inbox", subject="Quote", sender="carol@customer.example", to=[ADDRESS],
            message_id="<one@customer.example>", when=when)
    pane = make_pane(both)
    page = pane.open("#sync-settings")
    pane.login()
    token = pane.token()
    assert token
    sync = agree(page, both, token, ca)
    assert sync["state"] == "not_activated"

    fill_exchange(page, ADDRESS, PASSWORD, ews.ews_url)
    expect(page.locator("#exchange-status")).to_contain_text("Connected to", timeout=20_000)
    assert agree(page, both, token, ca)["state"] == "running"
    settle(page, both)
    agree(page, both, token, ca)
    expect(page.locator("#interval-text")).to_have_text(
        "Background sync runs every 30 minutes; every hour, then every 2 hours, while nothing changes. "
        "Sync now does not change that.")
    expect(page.locator("#recent-runs li")).to_have_count(1)
    expect(page.locator("#recent-runs li").first).to_contain_text("1 email logged")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#controls-status")).to_have_text("Sync is paused. Nothing is logged until you resume.")
    assert agree(page, both, token, ca)["state"] == "paused"
    expect(page.locator("#exchange-status")).to_have_text(f"Connected to {ADDRESS}. Sync is paused.")

    page.get_by_role("button", name="Resume").click()
    assert agree(page, both, token, ca)["state"] == "running"
    settle(page, both)
    agree(page, both, token, ca)
    expect(page.locator("#controls-status")).to_be_empty()  # "A run starts now" ended with the run

    page.get_by_role("button", name="Sync now").click()
    agree(page, both, token, ca)
    settle(page, both)
    agree(page, both, token, ca)
    expect(page.locator("#controls-status")).to_be_empty()  # "The result appears here" ended with the run
    expect(page.locator("#recent-runs li")).to_have_count(3)
    expect(page.locator("#recent-runs li").first).to_contain_text("Nothing new logged")

    page.get_by_role("button", name="Deactivate", exact=True).click()
    page.keyboard.press("Escape")  # Escape cancels the confirmation
    expect(page.locator("#deactivate-confirm")).to_be_hidden()
    expect(page.get_by_role("button", name="Deactivate", exact=True)).to_be_focused()
    page.get_by_role("button", name="Deactivate", exact=True).click()
    page.get_by_role("button", name="Deactivate sync").click()
    assert agree(page, both, token, ca)["state"] == "deactivated"
    expect(page.locator("#exchange-status")).to_be_empty()

    connect_microsoft(pane, ADDRESS)
    expect(page.locator("#microsoft-status")).to_contain_text("Connected to", timeout=20_000)
    sync = agree(page, both, token, ca)
    assert (sync["state"], sync["provider"]) == ("running", "microsoft")
    expect(page.locator("#controls-status")).to_be_empty()  # "deactivated" was about the old connection
    settle(page, both)
    agree(page, both, token, ca)
    page.get_by_role("button", name="Back").click()
    expect(page.locator("#home-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    # The same mailbox read two ways: its email is logged once.
    assert [m["MessageIdentifier"] for m in data.all("EmailMessage")] == ["<one@customer.example>"]
    pane.assert_clean()
