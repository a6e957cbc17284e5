"""Microsoft 365 in the pane: consent through the dialog, the sync controls, a run's counts, and
sync disabled by an error then re-enabled with Reconnect. Real app, fakes, an RQ worker in-process."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests
from playwright.sync_api import Page, expect
from rq import SimpleWorker

from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.context import use_app
from sandbox.salesforce_rest import data_of
from sandbox.tls import TestCA
from tests.browser.conftest import SCREENSHOTS, LiveServer, Pane
from tests.conftest import RunningFake

pytestmark = pytest.mark.browser

ALICE = "alice@acme.example"


@pytest.fixture
def fake_graph(fake_graph: RunningFake, fake_microsoft: RunningFake) -> RunningFake:
    """The fake Microsoft Graph, with Alice's mailbox."""
    fake_microsoft.state.add_user(ALICE)
    fake_graph.state.mailbox(ALICE)
    return fake_graph


@pytest.fixture
def m365(serve_app: Callable[..., LiveServer], fake_graph: RunningFake) -> LiveServer:
    """The app pointed at the fake Graph as well."""
    return serve_app(GRAPH_URL=fake_graph.url)


def run_jobs(server: LiveServer) -> int:
    """Run the queued sync jobs to completion in this process (an RQ worker in burst mode)."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    use_app(server.app)
    try:
        with server.app.app_context():
            svc = services()
            queues = [svc.queue(QUEUE_INTERACTIVE), svc.queue(QUEUE_SYNC)]
            before = sum(q.count for q in queues)
            SimpleWorker(queues, connection=svc.redis_raw).work(burst=True)
            return before
    finally:
        use_app(None)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def connect_microsoft(pane: Pane, username: str, action: str = "#accept") -> None:
    """Press Connect Microsoft 365 and answer the fake Microsoft page in the dialog."""
    page = pane.page
    with pane.context.expect_page() as popup_info:
        page.get_by_role("button", name="Connect Microsoft 365").click()
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


def test_consent_activates_sync_and_the_pane_shows_it_running(
    m365: LiveServer, make_pane: Callable[..., Pane], fake_microsoft: RunningFake
) -> None:
    """Consent through the dialog: sync runs, the pane says so, the menu now says Sync settings."""
    pane = make_pane(m365)
    page = open_settings(pane)
    connect_microsoft(pane, ALICE)
    status = page.locator("#microsoft-status")
    expect(status).to_have_text(f"Connected to {ALICE}. Sync is running \u2014 every 30 minutes.")
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    expect(page.locator("#settings-mailbox")).to_have_text(f"Mailbox: {ALICE} \u00b7 Microsoft 365")
    expect(page.get_by_role("button", name="Sync now")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    expect(page.locator("#settings-not-activated")).to_be_hidden()
    expect(page.locator("#connect-heading")).to_have_text("Mailbox connection")
    # The first run is queued right away (activation enqueues it).
    expect(page.locator("#run-progress-text")).to_have_text("A run is queued and starts shortly.")
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("menuitem", name="Sync settings")).to_be_visible()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Back").click()
    expect(page.locator("#home-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    expect(page.locator("#home-not-activated")).to_be_hidden()
    requests = fake_microsoft.state.authorize_requests
    assert len(requests) == 1 and requests[0]["login_hint"] == ALICE
    pane.assert_clean()


def test_mismatched_account_shows_the_mismatch(
    m365: LiveServer, make_pane: Callable[..., Pane], fake_microsoft: RunningFake, fake_graph: RunningFake
) -> None:
    """Signing in to Microsoft with another mailbox is refused, naming both; sync stays off."""
    fake_microsoft.state.add_user("bob@acme.example")
    fake_graph.state.mailbox("bob@acme.example")
    pane = make_pane(m365)
    page = open_settings(pane)
    connect_microsoft(pane, "bob@acme.example")
    error = page.locator("#microsoft-error")
    expect(error).to_have_text(
        "You signed in as bob@acme.example, but the add-in runs in alice@acme.example. Connect alice@acme.example "
        "instead.")
    button = page.get_by_role("button", name="Connect Microsoft 365")
    expect(button).to_be_enabled()
    assert "microsoft-error" in (button.get_attribute("aria-describedby") or "")
    expect(page.locator("#settings-state-label")).to_have_text("Sync is not activated")
    pane.assert_clean(allowed_statuses=(400,))  # the dialog's error page is a 400


def test_admin_approval_needed_says_what_to_tell_the_admin(
    m365: LiveServer, make_pane: Callable[..., Pane], fake_microsoft: RunningFake
) -> None:
    """A tenant that lets no user consent: the pane says an administrator must approve, and what to ask."""
    user = fake_microsoft.state.find_user(ALICE)
    assert user is not None
    fake_microsoft.state.tenant(user.tid).user_consent_allowed = False
    pane = make_pane(m365)
    page = open_settings(pane)
    connect_microsoft(pane, ALICE)
    error = page.locator("#microsoft-error")
    expect(error).to_contain_text("administrator to approve Sidebar Sync")
    expect(error).to_contain_text("Tell your Microsoft 365 administrator")
    expect(page.locator("#settings-state-label")).to_have_text("Sync is not activated")
    pane.assert_clean(allowed_statuses=(400,))  # the dialog's error page is a 400


def test_declined_consent_and_closed_dialog_are_explained(
    m365: LiveServer, make_pane: Callable[..., Pane]
) -> None:
    """Cancel on Microsoft's page, or closing the window, each says what happened."""
    pane = make_pane(m365)
    page = open_settings(pane)
    connect_microsoft(pane, ALICE, action="#cancel")
    expect(page.locator("#microsoft-error")).to_contain_text("You did not accept the permissions")
    with pane.context.expect_page() as popup_info:
        page.get_by_role("button", name="Connect Microsoft 365").click()
    popup_info.value.close()
    expect(page.locator("#microsoft-error")).to_have_text("The sign-in window was closed before you finished.")
    pane.assert_clean(allowed_statuses=(400,))


def test_nested_app_auth_login_starts_sync_when_consent_exists(
    m365: LiveServer, make_pane: Callable[..., Pane], fake_microsoft: RunningFake
) -> None:
    """Microsoft 365 host with NAA and consent given: sync runs right after the Salesforce login."""
    fake_microsoft.state.consent(ALICE)
    office = {"accountType": "office365", "requirementSets": {"Mailbox": "1.13", "NestedAppAuth": "1.1"}}
    pane = make_pane(m365, office=office, msal={"token": fake_microsoft.state.naa_token(ALICE)})
    page = pane.open()
    pane.login()
    expect(page.locator("#home-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    expect(page.locator("#home-not-activated")).to_be_hidden()
    pane.assert_clean()


def test_nested_app_auth_without_consent_puts_microsoft_first(
    m365: LiveServer, make_pane: Callable[..., Pane], fake_microsoft: RunningFake
) -> None:
    """Microsoft 365 host without consent yet: sync waits, and Sync settings leads with Microsoft 365."""
    office = {"accountType": "office365", "requirementSets": {"Mailbox": "1.13", "NestedAppAuth": "1.1"}}
    pane = make_pane(m365, office=office, msal={"token": fake_microsoft.state.naa_token(ALICE)})
    page = pane.open()
    pane.login()
    expect(page.locator("#home-not-activated")).to_be_visible()
    page.get_by_role("button", name="Set up sync").click()
    order = page.evaluate("() => Array.from(document.querySelectorAll('#providers > section'))"
                          ".filter((s) => !s.hidden).map((s) => s.id)")
    assert order == ["provider-microsoft", "provider-exchange"]
    connect_microsoft(pane, ALICE)
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    pane.assert_clean()


def test_controls_and_last_run_counts(
    m365: LiveServer, make_pane: Callable[..., Pane], fake_graph: RunningFake, fake_salesforce: RunningFake,
    ca: TestCA,
) -> None:
    """Sync now runs and the counts show; Pause, Resume and Deactivate change the state shown."""
    data = data_of(fake_salesforce.state)
    data.add_contact("carol@customer.example", last_name="Customer")
    when = datetime.now(tz=UTC) - timedelta(hours=2)
    fake_graph.state.add_message(ALICE, "inbox", subject="Quote", sender="carol@customer.example", to=[ALICE],
                                 when=when)
    fake_graph.state.add_message(ALICE, "inbox", subject="Lunch?", sender="friend@gmail.com", to=[ALICE], when=when)
    pane = make_pane(m365)
    page = open_settings(pane)
    connect_microsoft(pane, ALICE)
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    assert run_jobs(m365) == 1  # the first run, queued by the activation
    # The pane watches for the run's result after connecting: the counts appear without a reload.
    expect(page.locator("#last-run")).to_be_visible(timeout=20_000)
    counts = {name: page.locator(f"#last-run-{name}") for name in
              ("read", "filtered", "matched", "written", "duplicates", "quarantined")}
    expected = {"read": "2", "filtered": "1", "matched": "1", "written": "1", "duplicates": "0", "quarantined": "0"}
    for name, value in expected.items():
        expect(counts[name]).to_have_text(value)
    expect(page.locator("#last-run-error-row")).to_be_hidden()
    expect(page.locator("#run-progress")).to_be_hidden()
    expect(page.locator("#next-run")).to_contain_text("in 30 minutes")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header belongs at the top of a full-page shot
    page.screenshot(path=str(SCREENSHOTS / "sync-settings-running.png"), full_page=True)
    assert len(data.all("EmailMessage")) == 1

    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#controls-status")).to_have_text("Sync started. The result appears here when the run ends.")
    expect(page.locator("#run-progress-text")).to_have_text("A run is queued and starts shortly.")
    run_jobs(m365)
    expect(counts["read"]).to_have_text("0", timeout=20_000)  # the second run: nothing new
    expect(page.locator("#run-progress")).to_be_hidden()
    assert len(data.all("EmailMessage")) == 1

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#settings-state-label")).to_have_text("Sync is paused")
    expect(page.get_by_role("button", name="Resume")).to_be_focused()
    expect(page.get_by_role("button", name="Sync now")).to_be_hidden()
    expect(page.locator("#next-run")).to_have_text("None while sync is paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    expect(page.locator("#controls-status")).to_have_text("Sync resumed. A run starts now.")

    # Paused elsewhere meanwhile: the pane's Pause gets the server's 409 inline, then shows the state as it is.
    token = pane.token()
    assert token
    paused = requests.post(f"{m365.url}/api/sync/pause", headers={"Authorization": f"Bearer {token}"},
                           verify=ca.ca_path, timeout=10)
    assert paused.status_code == 200
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#controls-error")).to_have_text("Sync is paused, so it cannot be paused.")
    expect(page.locator("#settings-state-label")).to_have_text("Sync is paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#controls-error")).to_be_empty()
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")

    deactivate = page.get_by_role("button", name="Deactivate", exact=True)
    deactivate.click()
    expect(deactivate).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#deactivate-confirm")).to_be_hidden()
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    deactivate.click()
    page.get_by_role("button", name="Deactivate sync").click()
    expect(page.locator("#settings-state-label")).to_have_text("Sync is deactivated")
    expect(page.locator("#settings-not-activated")).to_be_visible()
    expect(page.locator("#controls-status")).to_have_text(
        "Sync is deactivated. The mailbox connection was removed; your Salesforce login stays.")
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("menuitem", name="Set up sync")).to_be_visible()
    pane.assert_clean(allowed_statuses=(409,))


def test_sync_disabled_by_auth_errors_shows_the_reason_and_reconnect_resumes(
    m365: LiveServer, make_pane: Callable[..., Pane], fake_microsoft: RunningFake
) -> None:
    """Refresh token revoked: after MAX_AUTH_FAILURES runs sync is disabled with the reason; Reconnect re-enables it."""
    pane = make_pane(m365)
    page = open_settings(pane)
    connect_microsoft(pane, ALICE)
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    run_jobs(m365)
    fake_microsoft.state.revoke_refresh_tokens(ALICE)
    fake_microsoft.state.consent(ALICE, given=False)
    from backend.jobs.sync import enqueue_sync

    failures = int(m365.config.get("MAX_AUTH_FAILURES", 6))
    with m365.app.app_context():
        mid = services().store.mailboxes.all_ids()[0]
    for _ in range(failures):
        with m365.app.app_context():
            assert enqueue_sync(mid)
        run_jobs(m365)
    page.reload()
    expect(page.locator("#settings-state-label")).to_have_text("Sync is disabled due to an error")
    disabled = page.locator("#settings-disabled")
    expect(disabled).to_be_visible()
    expect(page.locator("#settings-disabled-text")).to_contain_text(f"refused the saved sign-in {failures} time(s)")
    expect(page.locator("#settings-disabled-since")).to_contain_text("Since ")
    expect(page.locator("#connect-heading")).to_have_text("Reconnect your mailbox")
    page.get_by_role("button", name="Back").click()
    expect(page.locator("#home-disabled")).to_be_visible()
    page.get_by_role("button", name="Reconnect").click()
    connect = page.get_by_role("button", name="Connect Microsoft 365")
    expect(connect).to_be_focused()
    connect_microsoft(pane, ALICE)
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    expect(disabled).to_be_hidden()
    pane.assert_clean()


def test_salesforce_api_limit_backs_background_sync_off_and_the_pane_says_why(
    m365: LiveServer, make_pane: Callable[..., Pane], fake_graph: RunningFake, fake_salesforce: RunningFake,
) -> None:
    """Salesforce says the org's API limit is exceeded: the pane explains the backoff; Sync now still runs."""
    data = data_of(fake_salesforce.state)
    data.add_contact("carol@customer.example", last_name="Customer")
    fake_graph.state.add_message(ALICE, "inbox", subject="Hello", sender="carol@customer.example", to=[ALICE],
                                 when=datetime.now(tz=UTC) - timedelta(hours=1))
    pane = make_pane(m365)
    page = open_settings(pane)
    connect_microsoft(pane, ALICE)
    expect(page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
    assert run_jobs(m365) == 1
    expect(page.locator("#last-run")).to_be_visible(timeout=20_000)
    expect(page.locator("#settings-backoff")).to_be_hidden()

    fake_graph.state.add_message(ALICE, "inbox", subject="Quote", sender="carol@customer.example", to=[ALICE],
                                 when=datetime.now(tz=UTC) - timedelta(minutes=5))
    data.limit_exceeded = True
    from backend.jobs.sync import enqueue_sync

    with m365.app.app_context():
        mid = services().store.mailboxes.all_ids()[0]
        assert enqueue_sync(mid)
    run_jobs(m365)
    page.reload()
    backoff = page.locator("#settings-backoff")
    expect(backoff).to_be_visible()
    expect(page.locator("#settings-backoff-text")).to_contain_text("close to its daily Salesforce API limit")
    expect(page.locator("#settings-backoff-text")).to_contain_text("Sync now")

    # The person's own action keeps working while background runs wait.
    data.limit_exceeded = False
    page.get_by_role("button", name="Sync now").click()
    expect(page.locator("#controls-status")).to_have_text("Sync started. The result appears here when the run ends.")
    run_jobs(m365)
    expect(page.locator("#last-run-written")).to_have_text("1", timeout=20_000)
    assert sorted(m["Subject"] for m in data.all("EmailMessage")) == ["Hello", "Quote"]
    pane.assert_clean(allowed_statuses=())
