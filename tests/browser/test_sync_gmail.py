"""Gmail in the pane: consent through the dialog, the first run's counts, and each refusal explained.

Real app, the fake Google (OAuth, Gmail, Calendar), the fake Salesforce, an RQ worker in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from sandbox.salesforce_rest import data_of
from tests.browser.conftest import LiveServer, Pane
from tests.browser.test_sync_microsoft import run_jobs
from tests.conftest import GoogleFake, RunningFake

pytestmark = pytest.mark.browser

ALICE = "alice@acme.example"


@pytest.fixture
def google(fake_google: GoogleFake) -> GoogleFake:
    """The fake Google with Alice's Workspace account, mailbox and calendar."""
    fake_google.google.add_user(ALICE)
    fake_google.gmail.mailbox(ALICE)
    fake_google.calendar.calendar(ALICE)
    return fake_google


@pytest.fixture
def gmail_app(serve_app: Callable[..., LiveServer], google: GoogleFake) -> LiveServer:
    """The app pointed at the fake Google."""
    return serve_app(**google.settings())


def connect_gmail(pane: Pane, username: str, action: str = "#accept") -> None:
    """Press Connect Gmail and answer the fake Google consent page in the dialog."""
    page = pane.page
    with pane.context.expect_page() as popup_info:
        page.get_by_role("button", name="Connect Gmail").click()
    popup = popup_info.value
    popup.wait_for_load_state("domcontentloaded")
    expect(popup.locator("#username")).to_be_visible()
    popup.fill("#username", username)
    popup.click(action, no_wait_after=True)


def open_settings(pane: Pane) -> Page:
    """Log in and open Sync settings from the menu."""
    page = pane.open()
    pane.login()
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Set up sync").click()
    expect(page.get_by_role("heading", name="Sync settings")).to_be_focused()
    return page


def test_connect_gmail_and_see_the_first_runs_counts(
    gmail_app: LiveServer, make_pane: Callable[..., Pane], google: GoogleFake, fake_salesforce: RunningFake
) -> None:
    """Consent in the dialog: sync runs, and the first run's counts (an email and a meeting) show."""
    data = data_of(fake_salesforce.state)
    data.add_contact("carol@customer.example", last_name="Customer")
    now = datetime.now(tz=UTC)
    google.gmail.add_message(ALICE, ["INBOX"], subject="Quote", sender="carol@customer.example", to=[ALICE],
                             when=now - timedelta(hours=2))
    google.gmail.add_message(ALICE, ["INBOX"], subject="Lunch?", sender="friend@gmail.com", to=[ALICE],
                             when=now - timedelta(hours=2))
    start = (now + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    google.calendar.add_event(ALICE, subject="Review", start=start, end=start + timedelta(hours=1),
                              attendees=["carol@customer.example"])
    pane = make_pane(gmail_app)
    page = open_settings(pane)
    connect_gmail(pane, ALICE)
    expect(page.locator("#google-status")).to_have_text(f"Connected to {ALICE}. Sync is running \u2014 every 30 "
                                                        "minutes.")
    expect(page.locator("#settings-mailbox")).to_have_text(f"Mailbox: {ALICE} \u00b7 Gmail")
    assert run_jobs(gmail_app) == 1  # the first run, queued by the activation
    expect(page.locator("#last-run")).to_be_visible(timeout=20_000)
    expected = {"read": "3", "filtered": "1", "matched": "2", "written": "2", "duplicates": "0", "quarantined": "0"}
    for name, value in expected.items():
        expect(page.locator(f"#last-run-{name}")).to_have_text(value)
    assert [m["Subject"] for m in data.all("EmailMessage")] == ["Quote"]
    assert [e["Subject"] for e in data.all("Event")] == ["Review"]
    requests = google.google.authorize_requests
    assert len(requests) == 1 and requests[0]["login_hint"] == ALICE
    pane.assert_clean()


def test_another_google_account_is_refused_and_explained(
    gmail_app: LiveServer, make_pane: Callable[..., Pane], google: GoogleFake
) -> None:
    """Signing in with another Google account is refused, naming both; sync stays off."""
    google.google.add_user("bob@gmail.example")
    pane = make_pane(gmail_app)
    page = open_settings(pane)
    connect_gmail(pane, "bob@gmail.example")
    expect(page.locator("#google-error")).to_have_text(
        f"You signed in as bob@gmail.example, but the add-in runs in {ALICE}. Connect {ALICE} instead.")
    button = page.get_by_role("button", name="Connect Gmail")
    expect(button).to_be_enabled()
    assert "google-error" in (button.get_attribute("aria-describedby") or "")
    expect(page.locator("#settings-state-label")).to_have_text("Sync is not activated")
    pane.assert_clean(allowed_statuses=(400,))  # the dialog's error page is a 400


def test_denied_consent_and_closed_window_are_explained(
    gmail_app: LiveServer, make_pane: Callable[..., Pane]
) -> None:
    """Cancel on Google's screen, or closing the window, each says what happened."""
    pane = make_pane(gmail_app)
    page = open_settings(pane)
    connect_gmail(pane, ALICE, action="#cancel")
    expect(page.locator("#google-error")).to_contain_text("You did not allow Sidebar Sync to read your Gmail")
    with pane.context.expect_page() as popup_info:
        page.get_by_role("button", name="Connect Gmail").click()
    popup_info.value.close()
    expect(page.locator("#google-error")).to_have_text("The sign-in window was closed before you finished.")
    expect(page.locator("#settings-state-label")).to_have_text("Sync is not activated")
    pane.assert_clean(allowed_statuses=(400,))


def test_an_unverified_app_is_explained(
    gmail_app: LiveServer, make_pane: Callable[..., Pane], google: GoogleFake
) -> None:
    """Google blocking an unverified app: the pane says an administrator must verify it."""
    google.google.authorize_mode = "unverified"
    pane = make_pane(gmail_app)
    page = open_settings(pane)
    with pane.context.expect_page():
        page.get_by_role("button", name="Connect Gmail").click()
    expect(page.locator("#google-error")).to_contain_text("not verified yet")
    pane.assert_clean(allowed_statuses=(400,))
