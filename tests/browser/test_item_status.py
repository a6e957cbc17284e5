"""The item in front of the person, in the pane: what sync did with the open email or meeting.

Real app, the fake Exchange server and the fake org, an RQ worker in-process, the Office stand-in
with a selected item (and ItemChanged when the test selects another, as a pinned pane sees it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, Route, expect

from sandbox.harness.exchange import ADDRESS, PASSWORD, ExchangeHarness
from sandbox.salesforce_rest import Rule, data_of
from sandbox.tls import TestCA
from tests.browser.conftest import SCREENSHOTS, LiveServer, Pane, axe_violations
from tests.browser.test_sync_exchange import fill_exchange
from tests.browser.test_sync_microsoft import run_jobs
from tests.conftest import RunningFake

pytestmark = pytest.mark.browser

CAROL = "carol@customer.example"
COLLEAGUE = "bob@acme.example"


@pytest.fixture
def onprem(serve_app: Callable[..., LiveServer], ews: ExchangeHarness) -> LiveServer:
    """The app allowed to reach the fake Exchange server."""
    return serve_app(**ews.settings_overrides())


def email(item_id: str, message_id: str, sender: str, to: list[str] | None = None) -> dict[str, Any]:
    """The Office stand-in's description of a selected message."""
    return {"itemType": "message", "itemId": item_id, "internetMessageId": message_id, "from": sender,
            "to": to or [ADDRESS], "dateTimeCreated": (datetime.now(tz=UTC) - timedelta(hours=2)).isoformat()}


def seed(ews: ExchangeHarness, message_id: str, sender: str, subject: str, **extra: Any) -> str:
    """An email in Alice's inbox two hours ago; returns its EWS id (what Outlook calls itemId)."""
    return ews.add_email("inbox", subject=subject, sender=sender, to=extra.pop("to", [ADDRESS]),
                         body=f"{subject} body", message_id=message_id,
                         when=datetime.now(tz=UTC) - timedelta(hours=2), **extra)


def connect_and_run(pane: Pane, server: LiveServer, ews: ExchangeHarness) -> Page:
    """Log in, connect Exchange in Sync settings, run the first sync, and come back to the home view."""
    page = pane.open("#sync-settings")
    pane.login()
    fill_exchange(page, ADDRESS, PASSWORD, ews.ews_url)
    expect(page.locator("#exchange-status")).to_contain_text("Connected to", timeout=20_000)
    run_jobs(server)
    page.reload()
    expect(page.locator("#view-loading")).to_be_hidden()
    page.get_by_role("button", name="Back").click()
    return page


def select(page: Page, item: dict[str, Any] | None) -> None:
    """Select another item in Outlook (ItemChanged)."""
    page.evaluate("(item) => window.__OFFICE_STANDIN_SELECT__(item)", item)


def outcome(page: Page) -> Any:
    """The card's one-line answer."""
    return page.locator("#item-outcome-text")


def test_the_card_says_what_sync_did_with_each_item(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness, fake_salesforce: RunningFake
) -> None:
    """Logged (with links), filtered for each reason, not yet synced, refused by Salesforce; ItemChanged refreshes."""
    data = data_of(fake_salesforce.state)
    data.add_contact(CAROL, "Customer", FirstName="Carol")
    data.rules.append(Rule("EmailMessage", lambda r: "Refused" in str(r.get("Subject")), "Subject not allowed"))
    ids = {
        "logged": seed(ews, "<logged@customer.example>", CAROL, "Quote for Q3"),
        "free": seed(ews, "<free@gmail.example>", "friend@gmail.com", "Lunch?"),
        "internal": seed(ews, "<internal@acme.example>", COLLEAGUE, "Team lunch"),
        "private": seed(ews, "<private@customer.example>", CAROL, "Private matter", sensitivity="private"),
        "nobody": seed(ews, "<nobody@stranger.example>", "x@stranger.example", "Hello"),
        "refused": seed(ews, "<refused@customer.example>", CAROL, "Refused topic"),
    }
    pane = make_pane(onprem, office={"item": email(ids["logged"], "<logged@customer.example>", CAROL)})
    page = connect_and_run(pane, onprem, ews)
    card = page.get_by_role("region", name="This email")
    expect(card).to_be_visible()
    expect(outcome(page)).to_contain_text("Logged in Salesforce", timeout=15_000)
    record = data.all("EmailMessage")[0]
    link = card.get_by_role("link", name="Email in Salesforce")
    expect(link).to_have_attribute("href", f"{fake_salesforce.url}/lightning/r/EmailMessage/{record['Id']}/view")
    expect(link).to_have_attribute("target", "_blank")
    person = card.get_by_role("link", name="Carol Customer (Contact)")
    expect(person).to_have_attribute("href", f"{fake_salesforce.url}/lightning/r/Contact/"
                                             f"{data.all('Contact')[0]['Id']}/view")
    expect(page.get_by_role("button", name="Log it now")).to_be_hidden()
    assert axe_violations(page) == []
    page.screenshot(path=str(SCREENSHOTS / "item-status-logged.png"), full_page=True)
    # The record link opens the sandbox org's read-only page of the record.
    with pane.context.expect_page() as opened:
        link.click()
    record_page = opened.value
    record_page.wait_for_load_state("domcontentloaded")
    expect(record_page.locator("body")).to_contain_text("Quote for Q3")
    expect(record_page.get_by_role("link", name="Carol Customer")).to_be_visible()
    record_page.close()

    cases = [
        ("free", "<free@gmail.example>", "friend@gmail.com", "Not logged, because the sender's domain gmail.com "
                                                             "is free mail."),
        ("internal", "<internal@acme.example>", COLLEAGUE, "Not logged, because only people of your own company "
                                                           "take part."),
        ("private", "<private@customer.example>", CAROL, "Not logged, because it is marked private or confidential."),
        ("nobody", "<nobody@stranger.example>", "x@stranger.example", "Not logged, because nobody in it is a "
                                                                      "Contact or Lead in Salesforce."),
        ("refused", "<refused@customer.example>", CAROL, "Not logged, because Salesforce refused it "
                                                         "(FIELD_CUSTOM_VALIDATION_EXCEPTION)."),
    ]
    for name, message_id, sender, text in cases:
        select(page, email(ids[name], message_id, sender))
        expect(outcome(page)).to_have_text(text)
        if name == "free":
            assert axe_violations(page) == []
            page.screenshot(path=str(SCREENSHOTS / "item-status-not-logged.png"), full_page=True)
    expect(page.get_by_role("button", name="Log it now")).to_be_visible()  # refused: try again
    select(page, email(ids["private"], "<private@customer.example>", CAROL))
    expect(page.get_by_role("button", name="Log it now")).to_be_hidden()

    # Arrived after the run: not yet, with the time of the next run.
    later = seed(ews, "<later@customer.example>", CAROL, "Follow-up")
    select(page, email(later, "<later@customer.example>", CAROL))
    expect(outcome(page)).to_contain_text("Not yet: sync looks at it in the run at")
    # Sync now: once the run ends, the open item's answer follows without a reselect.
    page.get_by_role("button", name="Sync settings").click()
    page.get_by_role("button", name="Sync now").click()
    run_jobs(onprem)
    expect(page.locator("#run-progress")).to_be_hidden(timeout=20_000)
    page.get_by_role("button", name="Back").click()
    expect(outcome(page)).to_contain_text("Logged in Salesforce", timeout=15_000)
    # No item (the reading pane closed): the card goes away.
    select(page, None)
    expect(page.locator("#item-card")).to_be_hidden()
    pane.assert_clean()


def test_a_meeting_is_looked_up_by_its_uid(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness, fake_salesforce: RunningFake
) -> None:
    """The appointment read surface: the server reads the meeting's UID from the mailbox and answers."""
    data_of(fake_salesforce.state).add_contact(CAROL, "Customer", FirstName="Carol")
    start = datetime.now(tz=UTC) + timedelta(days=1)
    meeting = ews.add_event(subject="Quarterly review", start=start, end=start + timedelta(hours=1),
                            organizer=ADDRESS, attendees=[CAROL])
    office = {"item": {"itemType": "appointment", "itemId": meeting, "organizer": ADDRESS,
                       "requiredAttendees": [CAROL], "start": start.isoformat()}}
    pane = make_pane(onprem, office=office)
    page = connect_and_run(pane, onprem, ews)
    card = page.get_by_role("region", name="This meeting")
    expect(outcome(page)).to_contain_text("Logged in Salesforce", timeout=15_000)
    expect(card.get_by_role("link", name="Event in Salesforce")).to_be_visible()
    expect(card.get_by_role("link", name="Carol Customer (Contact)")).to_be_visible()
    assert axe_violations(page) == []
    pane.assert_clean()


def test_log_it_now_and_never_log_this_sender(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness, fake_salesforce: RunningFake,
    ca: TestCA,
) -> None:
    """Log it now writes the one item through the engine (also while paused); Never log adds the sender."""
    data = data_of(fake_salesforce.state)
    data.add_contact(CAROL, "Customer", FirstName="Carol")
    blocked = seed(ews, "<blocked@customer.example>", CAROL, "Blocked by me")
    free = seed(ews, "<free@gmail.example>", "friend@gmail.com", "Lunch?")
    pane = make_pane(onprem, office={"item": email(blocked, "<blocked@customer.example>", CAROL)})
    page = pane.open("#sync-settings")
    pane.login()
    page.get_by_label("Never log these addresses or domains").fill("customer.example")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#settings-save-status")).to_have_text("Saved.")
    fill_exchange(page, ADDRESS, PASSWORD, ews.ews_url)
    expect(page.locator("#exchange-status")).to_contain_text("Connected to", timeout=20_000)
    run_jobs(onprem)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#settings-state-label")).to_have_text("Sync is paused")
    page.get_by_role("button", name="Back").click()
    select(page, email(blocked, "<blocked@customer.example>", CAROL))
    expect(outcome(page)).to_have_text("Not logged, because carol@customer.example is on your blocklist.")
    log_now = page.get_by_role("button", name="Log it now")
    log_now.focus()
    page.keyboard.press("Enter")
    expect(outcome(page)).to_contain_text("Logged in Salesforce")
    expect(page.locator("#item-status")).to_have_text("Logged it now.")
    # The button that had focus is hidden now: focus moves to the card's heading, not to <body>.
    expect(log_now).to_be_hidden()
    assert page.evaluate("document.activeElement && document.activeElement.id") == "item-heading"
    assert "<blocked@customer.example>" in {m["MessageIdentifier"] for m in data.all("EmailMessage")}

    select(page, email(free, "<free@gmail.example>", "friend@gmail.com"))
    expect(outcome(page)).to_contain_text("free mail")
    page.get_by_role("button", name="Never log friend@gmail.com").click()
    expect(page.locator("#item-status")).to_have_text(
        "friend@gmail.com will not be logged from now on. Change this in Sync settings.")
    token = pane.token()
    sync = requests.get(f"{onprem.url}/api/sync", headers={"Authorization": f"Bearer {token}"},
                        verify=ca.ca_path, timeout=10).json()
    assert sync["settings"]["blocklist"] == ["customer.example", "friend@gmail.com"]
    # The decision of the run stands (Salesforce never got it); blocking again is not offered.
    select(page, email(free, "<free@gmail.example>", "friend@gmail.com"))
    expect(outcome(page)).to_contain_text("free mail")
    expect(page.get_by_role("button", name="Never log friend@gmail.com")).to_be_hidden()
    expect(page.get_by_role("button", name="Never log gmail.com")).to_be_hidden()
    assert axe_violations(page) == []
    pane.assert_clean()


def test_an_answer_to_log_it_now_for_an_item_no_longer_shown_is_not_shown(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness, fake_salesforce: RunningFake
) -> None:
    """Log it now on email A, then B is selected before A's answer comes: B's card keeps B's answer."""
    data = data_of(fake_salesforce.state)
    data.add_contact(CAROL, "Customer", FirstName="Carol")
    stranger = seed(ews, "<stranger@stranger.example>", "x@stranger.example", "Hello")
    pane = make_pane(onprem, office={"item": email(stranger, "<stranger@stranger.example>", "x@stranger.example")})
    page = connect_and_run(pane, onprem, ews)
    expect(outcome(page)).to_contain_text("nobody in it is a Contact or Lead")
    later = seed(ews, "<later@customer.example>", CAROL, "Follow-up")
    select(page, email(later, "<later@customer.example>", CAROL))
    expect(outcome(page)).to_contain_text("Not yet")
    held: list[Route] = []
    page.route("**/api/items/log", lambda route: held.append(route))  # A's answer waits for the test
    with page.expect_request("**/api/items/log"):
        page.get_by_role("button", name="Log it now").click()
    select(page, email(stranger, "<stranger@stranger.example>", "x@stranger.example"))
    b_answer = "Not logged, because nobody in it is a Contact or Lead in Salesforce."
    expect(outcome(page)).to_have_text(b_answer)
    with page.expect_response("**/api/items/log") as logged:
        held[0].continue_()
    assert logged.value.ok and logged.value.json()["status"] == "logged"
    assert "<later@customer.example>" in {m["MessageIdentifier"] for m in data.all("EmailMessage")}
    # Give the pane the time to (wrongly) apply it, then check B's card and status line.
    page.wait_for_timeout(300)
    expect(outcome(page)).to_have_text(b_answer)
    expect(page.locator("#item-status")).to_have_text("")
    expect(page.locator("#item-records")).to_be_hidden()
    pane.assert_clean()


def test_the_pane_warns_when_this_mailbox_is_not_the_synced_one(
    onprem: LiveServer, make_pane: Callable[..., Pane], ews: ExchangeHarness
) -> None:
    """Sync runs for Alice's mailbox; the pane opened in Bob's says so, with the way to change it."""
    alice = make_pane(onprem)
    connect_and_run(alice, onprem, ews)
    expect(alice.page.locator("#mailbox-mismatch")).to_be_hidden()
    bob = make_pane(onprem, office={"emailAddress": "bob@acme.example"})
    page = bob.open()
    bob.login()
    warning = page.locator("#mailbox-mismatch")
    expect(warning).to_be_visible()
    expect(page.locator("#mailbox-mismatch-text")).to_have_text(
        f"Sync runs for {ADDRESS}. This mailbox, bob@acme.example, is not synced.")
    assert axe_violations(page, "#view-home") == []
    page.get_by_role("button", name="Change the synced mailbox").click()
    expect(page.get_by_role("heading", name="Sync settings")).to_be_focused()
    bob.assert_clean()
