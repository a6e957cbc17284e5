"""The console's On-premises Exchange access and the Activate picker in Chromium (issue 12's done-when).

The admin saves the org's service account in Mailbox access (a wrong password first: the API's
message is shown), tests it against a mailbox outside the ApplicationImpersonation scope (the
refusal is shown) and one inside, picks On-premises Exchange in Activate and activates three people;
a real ``rq worker`` process runs the activation and each person's first run against the fake EWS
(impersonating each of them); the fake Salesforce holds each person's email created by that person.
Then the service account's password changes: the console shows the connection broken since when,
and after the new password is saved, Test says all three resumed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from backend.extensions import services
from backend.jobs.sync import enqueue_sync
from backend.store.mailboxes import SyncState
from backend.store.users import user_id_for
from backend.sync.mass import MESSAGES
from backend.sync.org_providers import EXCHANGE, ORG_PROVIDERS
from sandbox.harness.exchange import ExchangeHarness
from tests.browser.conftest import SCREENSHOTS, LiveServer, Pane, axe_violations
from tests.browser.mass_steps import (
    add_salesforce_person,
    assert_created_by,
    console_sign_in,
    open_view,
    results_table,
    running_worker,
    start_activation,
    sync_now_from_console,
    wait_for_progress,
    wait_for_runs,
)
from tests.browser.test_admin_console import WIDE
from tests.e2e import wait_until
from tests.exchange_mass_env import SERVICE, SERVICE_PASSWORD
from tests.mass_env import JWT_KEYS, ORG, address

pytestmark = pytest.mark.browser
CUSTOMER = "customer@client.example"
NAMES = ["bob", "jill", "kim"]
OUTSIDE = "gina"  # a mailbox on the server, outside the role's management scope
ROTATED = "rotated-Passw0rd"


def state_of(server: LiveServer, uid: str) -> SyncState | None:
    """A person's sync state as the store holds it."""
    with server.app.app_context():
        mailbox = services().store.mailboxes.get(uid)
    return mailbox.state if mailbox else None


def seed_org(sf: Any, ews: ExchangeHarness) -> None:
    """The admin, three people in Salesforce and on Exchange (inside the scope), Gina outside it."""
    sf.state.add_user("ada@acme.example", "ada-pw", name="Ada Admin", is_admin=True)
    sf.state.jwt_certificates.append(JWT_KEYS[1])
    sf.state.rest.add_contact(CUSTOMER)
    ews.state.add_user(SERVICE, SERVICE_PASSWORD, account="svc-sync", display_name="Sidebar Sync service")
    for name in NAMES:
        add_salesforce_person(sf, address(name), name.capitalize())
        if address(name) not in ews.state.users:  # the harness already has Bob's mailbox
            ews.state.add_user(address(name), f"{name}-pw", account=name, display_name=name.capitalize())
        ews.state.add_email(address(name), "inbox", subject=f"Quote for {name}", sender=CUSTOMER, to=[address(name)])
    ews.state.add_user(address(OUTSIDE), "gina-pw", account=OUTSIDE, display_name="Gina")
    ews.state.impersonation[SERVICE] = {address(n) for n in NAMES}


def save_service_account(page: Page, password: str, ews_url: str) -> dict[str, Any]:
    """Fill the Exchange form and press Save; the API's JSON answer to that PUT."""
    form = page.locator("#access-ex-form")
    form.get_by_label("Service account login").fill(SERVICE)
    form.get_by_label("Password").fill(password)
    form.get_by_label("EWS URL (optional)").fill(ews_url)
    with page.expect_response("**/api/admin/connections/exchange") as answer:
        form.get_by_role("button", name="Save the service account").click()
    body: dict[str, Any] = answer.value.json()
    return body


def press_test(page: Page, mailbox: str) -> dict[str, Any]:
    """Type one mailbox in Test and press it (keyboard: Enter submits); the API's answer."""
    field = page.get_by_label("Exchange mailbox to test with")
    field.fill(mailbox)
    with page.expect_response("**/api/admin/connections/exchange/check") as answer:
        field.press("Enter")
    body: dict[str, Any] = answer.value.json()
    return body


def choose_exchange(page: Page) -> None:
    """The Activate picker: On-premises Exchange."""
    page.get_by_role("radio", name="On-premises Exchange").check()


def test_three_people_activated_through_the_exchange_service_account_are_synced_as_themselves(
        make_pane: Callable[..., Pane], serve_app: Callable[..., LiveServer], fake_salesforce: Any,
        ews: ExchangeHarness, tmp_path: Path) -> None:
    seed_org(fake_salesforce, ews)
    server = serve_app(**ews.settings_overrides(), SALESFORCE_JWT_PRIVATE_KEY=JWT_KEYS[0])
    console = console_sign_in(make_pane, server, "ada@acme.example", "ada-pw")
    page = console.page
    sent: list[Any] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/api/admin/activate") else None)

    # Not set up yet: the picker says so, and the API's refusal is shown as it gives it.
    open_view(page, "Activate")
    expect(page.locator("#activate-provider-exchange-state")).to_have_text("Not set up yet: see Mailbox access")
    expect(page.locator("#activate-provider-microsoft-state")).to_have_text("Not set up yet: see Mailbox access")
    choose_exchange(page)
    expect(page.locator("#activate-provider-note")).to_have_text(EXCHANGE.missing)
    page.get_by_label("Email addresses").fill(address("bob"))
    page.get_by_role("button", name="Activate", exact=True).click()
    expect(page.locator("#activate-error")).to_have_text(EXCHANGE.missing)
    assert sent == [{"provider": "exchange", "users": [address("bob")]}]

    open_view(page, "Mailbox access")
    section = page.locator("#access-exchange")
    expect(page.locator("#access-ex-state")).to_have_text("Not set up yet")
    expect(section).to_contain_text("-Role ApplicationImpersonation")
    expect(section).to_contain_text("-CustomRecipientWriteScope")
    expect(section).to_contain_text("Exchange Online has no impersonation")

    # A wrong password: nothing saved, the API's message next to the form.
    refused = save_service_account(page, "not-the-password", ews.ews_url)
    assert refused["error"]["code"] == "auth_failed", refused
    expect(page.locator("#access-ex-error")).to_have_text(refused["error"]["message"])
    expect(page.locator("#access-ex-state")).to_have_text("Not set up yet")

    saved = save_service_account(page, SERVICE_PASSWORD, ews.ews_url)
    assert saved["state"] == "ok" and saved["password_saved"] and SERVICE_PASSWORD not in str(saved), saved
    expect(page.locator("#access-ex-status")).to_have_text("Service account saved.")
    expect(page.locator("#access-ex-error")).to_be_empty()
    expect(page.locator("#access-ex-state")).to_have_text(
        "Connected: the service account can impersonate the people you activate")
    expect(page.locator("#access-ex-account")).to_have_text(SERVICE)
    expect(page.locator("#access-ex-ews")).to_have_text(ews.ews_url)
    expect(page.locator("#access-exchange").get_by_label("Password")).to_have_value("")  # write-only: never filled back
    expect(page.locator("#access-ex-password-hint")).to_contain_text("A password is saved")

    # Test: outside the scope the refusal is shown; inside it works.
    outside = press_test(page, address(OUTSIDE))
    assert outside["check"] == "refused" and outside["check_code"] == "impersonation_denied", outside
    expect(page.locator("#access-ex-test-status")).to_have_text(f"Exchange refused: {outside['check_message']}")
    inside = press_test(page, address("bob"))
    assert inside["check"] == "ok" and inside["resumed"] == 0, inside
    expect(page.locator("#access-ex-test-status")).to_have_text(
        "The service account can read this mailbox. 0 people resumed.")
    found = axe_violations(page, "#access")
    assert found == [], found
    section.screenshot(path=str(SCREENSHOTS / "admin-exchange-access.png"))
    # At a sidebar's 320 px the form and the PowerShell lines wrap inside the page: nothing sticks out.
    page.set_viewport_size({"width": 320, "height": 720})
    # Every element of the section ends inside it (the ones that do not are named on failure).
    sticking_out = section.evaluate("""s => { const right = s.getBoundingClientRect().right;
        return [...s.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > right + 0.5)
          .map(e => `${e.tagName}#${e.id} ends at ${e.getBoundingClientRect().right}`); }""")
    assert sticking_out == [] and section.evaluate("s => s.getBoundingClientRect().right") <= 320, sticking_out
    page.set_viewport_size(WIDE)

    # After a reload the password stays unsaid and the picker offers Exchange, the only provider set up.
    page.reload()
    open_view(page, "Activate")
    expect(page.locator("#activate-provider-exchange-state")).to_have_text("Set up")
    expect(page.get_by_role("radio", name="On-premises Exchange")).to_be_checked()
    # A provider the server cannot mass-activate is not offered; one it can is, set up or not.
    google = page.get_by_role("radio", name="Google Workspace")
    expect(google).to_be_enabled() if "google" in ORG_PROVIDERS else expect(google).to_be_disabled()
    found = axe_violations(page, "#activate")
    assert found == [], found
    open_view(page, "Mailbox access")
    expect(page.locator("#access-exchange").get_by_label("Password")).to_have_value("")
    expect(page.get_by_label("Service account login")).to_have_value(SERVICE)

    with running_worker(server, tmp_path) as worker:
        start_activation(page, [address(n) for n in NAMES], choose=choose_exchange)
        seen = wait_for_progress(page, 3, worker)
        assert seen[-1] == "Done: 3 of 3 people" and all(" of 3 people" in line for line in seen), seen
        assert sent[-1] == {"provider": "exchange", "users": [address(n) for n in NAMES]}, sent
        table = sorted(results_table(page))
        assert table == [(address(n), "Activated", MESSAGES["activated"]) for n in NAMES], table
        link = page.get_by_role("link", name="Download the results (CSV)")
        expect(link).to_be_visible()
        downloaded = page.request.get(f"{server.url}{link.get_attribute('href')}")
        assert downloaded.ok and downloaded.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(downloaded.text())))
        assert rows[0] == ["address", "result", "message"]
        assert sorted(rows[1:]) == [[address(n), "activated", MESSAGES["activated"]] for n in NAMES], rows

        sync_now_from_console(page, [n.capitalize() for n in NAMES])
        expect(page.locator("#users-body")).to_contain_text("Exchange \u00b7 service account")
        uids = [user_id_for(ORG, str(fake_salesforce.state.users[address(n)].user_id)) for n in NAMES]
        runs = wait_for_runs(server, uids, worker)
        assert all(run["counts"]["written"] == 1 for run in runs.values()), runs

        # The service account's password changes on the Exchange side: Bob's next background run (as the
        # clock would queue it; Sync now is once a minute) proves the org's access broken.
        ews.state.users[SERVICE].password = ROTATED
        with server.app.app_context():
            assert enqueue_sync(uids[0])
        wait_until(lambda: all(state_of(server, uid) is SyncState.DISABLED_ERROR for uid in uids), 60,
                   "everyone disabled by the broken org connection", worker)
    assert_created_by(fake_salesforce, {f"Quote for {n}": str(fake_salesforce.state.users[address(n)].user_id)
                                        for n in NAMES})
    with server.app.app_context():
        broken = services().store.org_access.get(ORG).broken["exchange"]
    page.reload()  # the admin comes back to the console
    open_view(page, "Activate")
    expect(page.locator("#activate-provider-exchange-state")).to_have_text("Set up, but broken: see Mailbox access")
    open_view(page, "Mailbox access")
    expect(page.locator("#access-ex-state")).to_have_text("Broken: sync is stopped for the people activated through it")
    expect(page.locator("#access-ex-broken")).to_contain_text(f"{broken['message']} (since ")
    # The admin saves the new password and presses Test: everyone it stopped resumes.
    assert save_service_account(page, ROTATED, ews.ews_url)["state"] == "broken"  # until a Test proves it
    fixed = press_test(page, address("jill"))
    assert fixed["check"] == "ok" and fixed["resumed"] == 3 and fixed["state"] == "ok", fixed
    expect(page.locator("#access-ex-test-status")).to_have_text(
        "The service account can read this mailbox. 3 people resumed.")
    expect(page.locator("#access-ex-broken")).to_be_empty()
    assert all(state_of(server, uid) is SyncState.RUNNING for uid in uids)
    # 401: /api/admin/session before signing in; 409: Activate before setup; 422: the wrong password.
    console.assert_clean(allowed_statuses=(401, 409, 422))
