"""On-premises Exchange in the pane: Connect to Exchange against the fake EWS server, each failure
shown next to the form in words, and Reconnect after sync was disabled by a changed password."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, Request, Route, expect

from sandbox.harness.exchange import ADDRESS, PASSWORD, ExchangeHarness
from tests.browser.conftest import LiveServer, Pane
from tests.browser.test_sync_microsoft import run_jobs

pytestmark = pytest.mark.browser
RUNNING = "Sync is running \u2014 every 30 minutes"


@pytest.fixture
def onprem(serve_app: Callable[..., LiveServer], ews: ExchangeHarness) -> LiveServer:
    """The app allowed to reach the fake Exchange server."""
    return serve_app(**ews.settings_overrides())


def exchange_form(pane: Pane) -> Page:
    """Log in and open Sync settings (deep link)."""
    page = pane.open("#sync-settings")
    pane.login()
    expect(page.get_by_role("heading", name="Sync settings")).to_be_visible()
    return page


def fill_exchange(page: Page, login: str, password: str, ews_url: str | None = None) -> None:
    """Fill the Exchange form (opening More for the EWS URL) and press Connect to Exchange."""
    page.get_by_role("textbox", name="Login").fill(login)
    page.get_by_label("Password").fill(password)
    if ews_url is not None:
        more = page.get_by_role("button", name="More")
        if more.get_attribute("aria-expanded") != "true":
            more.click()
        page.get_by_label("EWS URL").fill(ews_url)
    page.get_by_role("button", name="Connect to Exchange").click()


def test_connect_to_exchange_with_the_ews_url(onprem: LiveServer, make_pane: Callable[..., Pane],
                                             ews: ExchangeHarness) -> None:
    """The right password and the EWS URL under More: connected, running, a first run queued, password gone."""
    pane = make_pane(onprem)
    page = exchange_form(pane)
    more = page.get_by_role("button", name="More")
    expect(more).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_label("EWS URL")).to_be_hidden()
    sent: list[Any] = []

    def record(request: Request) -> None:
        if request.url.endswith("/api/sync/exchange"):
            sent.append(request.post_data_json)

    pane.context.on("request", record)
    fill_exchange(page, ADDRESS, PASSWORD, ews.ews_url)
    expect(page.locator("#exchange-status")).to_have_text(f"Connected to {ADDRESS}. {RUNNING}.", timeout=20_000)
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.locator("#settings-state-label")).to_have_text(RUNNING)
    expect(page.locator("#settings-mailbox")).to_have_text(f"Mailbox: {ADDRESS} \u00b7 Exchange")
    expect(page.locator("#run-progress-text")).to_have_text("A run is queued and starts shortly.")
    assert sent == [{"login": ADDRESS, "password": PASSWORD, "ews_url": ews.ews_url}]
    # The EWS URL stays visible while it holds a value, also after a reload (from the saved connection).
    page.reload()
    expect(page.get_by_label("EWS URL")).to_have_value(ews.ews_url)
    expect(more).to_have_attribute("aria-expanded", "true")
    more.click()
    expect(page.get_by_label("EWS URL")).to_be_visible()
    pane.assert_clean()


def test_connect_to_exchange_by_autodiscover(onprem: LiveServer, make_pane: Callable[..., Pane]) -> None:
    """Without an EWS URL, Autodiscover finds the server."""
    pane = make_pane(onprem)
    page = exchange_form(pane)
    fill_exchange(page, ADDRESS, PASSWORD)
    expect(page.locator("#exchange-status")).to_have_text(f"Connected to {ADDRESS}. {RUNNING}.", timeout=20_000)
    pane.assert_clean()


def test_connect_shows_progress_and_cannot_be_pressed_twice(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness
) -> None:
    """While connecting the button is disabled and says so; a second press sends nothing."""
    pane = make_pane(onprem)
    page = exchange_form(pane)
    held: list[Route] = []
    page.route("**/api/sync/exchange", lambda route: held.append(route))
    fill_exchange(page, ADDRESS, PASSWORD, ews.ews_url)
    button = page.locator("#exchange-connect")
    expect(button).to_be_disabled()
    expect(button).to_have_text("Connecting\u2026")
    expect(button).to_have_attribute("aria-busy", "true")
    button.click(force=True)
    page.wait_for_timeout(300)
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#exchange-status")).to_have_text(f"Connected to {ADDRESS}. {RUNNING}.", timeout=20_000)
    expect(button).to_be_enabled()
    expect(button).to_have_text("Connect to Exchange")
    pane.assert_clean()


@pytest.mark.parametrize(
    ("login", "password", "ews_url", "field", "message"),
    [
        pytest.param(ADDRESS, "wrong-password", "{ews}", None, "Exchange did not accept this login and password",
                     id="wrong password"),
        # Answered like a wrong password: naming Bob's mailbox would be an oracle (issue 18).
        pytest.param("bob@acme.example", "bob-password", "{ews}", None,
                     "Exchange did not accept this login and password", id="other mailbox"),
        pytest.param(ADDRESS, PASSWORD, "https://10.20.30.40/EWS/Exchange.asmx", None, "10.20.30.40",
                     id="private host"),
        pytest.param(ADDRESS, PASSWORD, "http://mail.acme.example/EWS/Exchange.asmx", "ews_url",
                     "EWS URL must start with https://.", id="not https"),
    ],
)
def test_connect_failures_are_shown_next_to_the_form(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness,
    login: str, password: str, ews_url: str, field: str | None, message: str,
) -> None:
    """Each failure is the server's message in words, next to the form or the field; the password is cleared."""
    pane = make_pane(onprem)
    page = exchange_form(pane)
    fill_exchange(page, login, password, ews_url.replace("{ews}", ews.ews_url))
    target = page.locator(f"#exchange-{field.replace('_', '-')}-error" if field else "#exchange-error")
    expect(target).to_contain_text(message, timeout=20_000)
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.locator("#settings-state-label")).to_have_text("Sync is not activated")
    expect(page.get_by_role("button", name="Connect to Exchange")).to_be_enabled()
    if field:
        control = page.locator(f"#exchange-{field.replace('_', '-')}")
        expect(control).to_have_attribute("aria-invalid", "true")
        expect(control).to_be_focused()
    else:
        describedby = page.locator("#exchange-connect").get_attribute("aria-describedby") or ""
        assert "exchange-error" in describedby
    assert password not in (page.locator("#exchange-error").text_content() or "")
    pane.assert_clean(allowed_statuses=(400, 401, 403, 409, 422, 502))


def test_repeated_wrong_passwords_say_when_to_try_again(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness
) -> None:
    """After a few wrong passwords the pane says the attempts are limited and when to try again."""
    pane = make_pane(onprem)
    page = exchange_form(pane)
    error = page.locator("#exchange-error")
    for _ in range(12):
        fill_exchange(page, ADDRESS, "wrong-password", ews.ews_url)
        expect(page.get_by_role("button", name="Connect to Exchange")).to_be_enabled(timeout=20_000)
        expect(error).not_to_be_empty()
        if "try again at" in (error.text_content() or ""):
            break
    expect(error).to_contain_text("You can try again at")
    pane.assert_clean(allowed_statuses=(400, 401, 403, 422, 429))


def test_reconnect_after_a_password_change_resumes_sync(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness
) -> None:
    """Password changed on the server: sync is disabled with the reason; Reconnect with the new one resumes it."""
    pane = make_pane(onprem)
    page = exchange_form(pane)
    fill_exchange(page, ADDRESS, PASSWORD, ews.ews_url)
    expect(page.locator("#settings-state-label")).to_have_text(RUNNING, timeout=20_000)
    run_jobs(onprem)
    new_password = "New-Password-43!"
    ews.state.revoke(ADDRESS, new_password)  # the password changed on the server
    from backend.extensions import services
    from backend.jobs.sync import enqueue_sync

    with onprem.app.app_context():
        mid = services().store.mailboxes.all_ids()[0]
        failures = services().settings.MAX_AUTH_FAILURES
    for _ in range(failures):
        with onprem.app.app_context():
            enqueue_sync(mid)
        run_jobs(onprem)
    page.reload()
    expect(page.locator("#settings-state-label")).to_have_text("Sync is disabled due to an error")
    expect(page.locator("#settings-disabled-text")).not_to_be_empty()
    page.get_by_role("button", name="Reconnect").click()
    password = page.get_by_label("Password")
    expect(password).to_be_focused()  # the login is kept from the saved connection
    expect(page.get_by_role("textbox", name="Login")).to_have_value(ADDRESS)
    password.fill(new_password)
    page.get_by_role("button", name="Connect to Exchange").click()
    expect(page.locator("#settings-state-label")).to_have_text(RUNNING, timeout=20_000)
    expect(page.locator("#settings-disabled")).to_be_hidden()
    pane.assert_clean(allowed_statuses=(400, 401))
