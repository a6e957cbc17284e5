"""The admin console in Chromium: sign in as an admin, filter, act on one user and on a selection,
lock a setting and see it greyed in that user's pane, read the audit log; by keyboard too; axe-core
(npm) reports no violation on the console's views.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from backend.extensions import services
from tests.admin.helpers import ORG, run_record, seed_user
from tests.browser.conftest import REPO, SCREENSHOTS, LiveServer, Pane

pytestmark = pytest.mark.browser

AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
WIDE = {"width": 1366, "height": 900}


def axe_violations(page: Page, what: str) -> None:
    """Inject axe-core (from npm, package-lock.json) and assert it finds no violation on the page."""
    assert AXE.exists(), "axe-core is missing: run `npm ci` (scripts/bootstrap.sh does)"
    # evaluate() runs through DevTools, outside the page's CSP (no inline script is added to the page).
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(Path(AXE).read_text(encoding="utf-8") + "\n;0")
    result = page.evaluate("""async () => {
        const r = await window.axe.run(document, {resultTypes: ["violations"]});
        return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5)}));
    }""")
    assert result == [], f"axe violations on {what}: {json.dumps(result, indent=1)}"


@pytest.fixture
def org(live_server: LiveServer, fake_salesforce: Any) -> dict[str, str]:
    """Ada (an admin: Modify All Data), Alice (not), and 30 seeded users of the org."""
    fake_salesforce.state.add_user("ada@acme.example", "ada-pw", name="Ada Admin", is_admin=True)
    ids: dict[str, str] = {}
    with live_server.app.app_context():
        for n in range(30):
            state = ("running", "running", "paused", "disabled_error", "not_activated")[n % 5]
            ids[f"user{n}"] = seed_user(ORG, n, state=state, provider="microsoft" if n % 2 else "exchange")
        store = services().store
        now = time.time()
        for n in range(30):
            if n % 5 in (0, 1, 2, 3):  # connected ones have run
                run = run_record("error" if n % 5 == 3 else "ok", now - 600 - n * 60)
                store.runs.record(ids[f"user{n}"], run)
                store.mailboxes.update(ids[f"user{n}"], last_run=run, caught_up_at=now - 3600 - n * 600)
                store.users.update(ids[f"user{n}"], last_seen_at=now - n * 3600)
        store.orgs.update(ORG, api_used=12_400, api_max=100_000, api_seen_at=now)
        services().store.quarantine.add(ids["user3"], [{"key": "<m3@acme.example>", "object": "EmailMessage",
                                                         "reason": "FIELD_CUSTOM_VALIDATION_EXCEPTION: Too long"}])
    return ids


def console_sign_in(make_pane: Callable[..., Pane], server: LiveServer, username: str, password: str) -> Pane:
    """Open /admin in a wide window and sign in with Salesforce (the fake's login page)."""
    console = make_pane(server, **WIDE)
    page = console.page
    page.goto(f"{server.url}/admin")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("link", name="Sign in with Salesforce").click()
    expect(page.locator("#username")).to_be_visible()
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#Login")
    page.wait_for_url(f"{server.url}/admin")
    return console


def test_console_end_to_end(make_pane: Callable[..., Pane], live_server: LiveServer, org: dict[str, str],
                            pane: Pane) -> None:
    console = console_sign_in(make_pane, live_server, "ada@acme.example", "ada-pw")
    page = console.page
    expect(page.get_by_role("heading", name="Your organisation at a glance")).to_be_visible()
    expect(page.locator("#sum-running")).to_have_text("12")
    expect(page.locator("#sum-disabled_error")).to_have_text("6")
    expect(page.locator("#page-label")).to_contain_text("31 users")  # Ada included
    axe_violations(page, "the overview and users")
    page.screenshot(path=str(SCREENSHOTS / "admin-console.png"), full_page=False)

    # Filter: disabled Microsoft 365 mailboxes, then search.
    page.get_by_label("State").select_option("disabled_error")
    page.get_by_label("Provider").select_option("microsoft")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#users-status")).to_have_text("3 users match.")
    expect(page.locator("#users-body tr")).to_have_count(3)
    page.get_by_label("State").select_option("")
    page.get_by_label("Provider").select_option("")
    page.get_by_label("Name or address").fill("user3@acme")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#users-body tr")).to_have_count(1)

    # One user: the detail, Salesforce's reason for a quarantined item, Enable.
    page.get_by_role("button", name="User 00003").click()
    expect(page.locator("#detail")).to_be_focused()
    expect(page.locator("#issues-list")).to_contain_text("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    axe_violations(page, "a user's detail")
    page.screenshot(path=str(SCREENSHOTS / "admin-user-detail.png"), full_page=False)
    page.locator("#detail").get_by_role("button", name="Enable").click()
    expect(page.locator("#detail-status")).to_have_text("Enable: done.")
    expect(page.locator("#detail-facts")).to_contain_text("Enabled")
    page.get_by_role("button", name="Close").click()
    expect(page.get_by_role("button", name="User 00003")).to_be_focused()

    # A selection: every enabled user on the page, paused at once.
    page.get_by_label("Name or address").fill("")
    page.get_by_label("State").select_option("running")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#users-status")).to_have_text("13 users match.")
    page.get_by_label("Select every user on this page").check()
    page.get_by_label("Action", exact=True).select_option("pause")
    page.get_by_role("button", name="Apply to 13 selected").click()
    expect(page.locator("#users-status")).to_have_text("Pause: done for 13 of 13.")
    expect(page.locator("#sum-paused")).to_have_text("19")
    expect(page.locator("#users-body tr")).to_have_count(0)  # the list still shows enabled ones: none left

    # Lock a setting; Alice's pane shows it greyed, set by the administrator.
    page.get_by_label("Log meetings and events", exact=True).uncheck()
    page.get_by_label("Lock log meetings and events").check()
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#policy-status")).to_have_text("Policy saved.")
    axe_violations(page, "the policy and the audit log")

    # The audit log: who, what, on whom.
    audit = page.locator("#audit-body")
    expect(audit.locator("tr").first).to_contain_text("Changed the policy")
    expect(audit).to_contain_text("Ada Admin")
    expect(audit).to_contain_text("User 00003")
    expect(audit).to_contain_text("Pause")
    page.locator("#audit").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "admin-policy-audit.png"), full_page=True)
    console.assert_clean(allowed_statuses=(401,))

    alice = pane.open()
    pane.login()
    alice.get_by_role("button", name="Menu").click()
    expect(alice.get_by_role("menuitem", name="Administration")).to_be_hidden()
    alice.keyboard.press("Escape")
    pane.open("#sync-settings")
    events = alice.get_by_label("Meetings and events")
    expect(events).to_be_disabled()
    expect(events).not_to_be_checked()
    expect(alice.locator("#lock-sync_events")).to_be_visible()
    expect(alice.locator("#lock-sync_events")).to_contain_text("set by your administrator")
    expect(alice.get_by_label("Emails")).to_be_enabled()
    # Saving the rest leaves the locked value out (the API would refuse it).
    alice.get_by_label("Emails").uncheck()
    alice.get_by_role("button", name="Save").click()
    expect(alice.locator("#settings-save-status")).to_have_text("Saved.")
    pane.assert_clean()


def test_console_by_keyboard(make_pane: Callable[..., Pane], live_server: LiveServer, org: dict[str, str]) -> None:
    console = console_sign_in(make_pane, live_server, "ada@acme.example", "ada-pw")
    page = console.page
    expect(page.locator("#page-label")).to_contain_text("31 users")
    # The skip link is the first stop and lands in the content.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    # Search by typing and Enter (the form's submit).
    page.get_by_label("Name or address").focus()
    page.keyboard.type("User 00006")
    page.keyboard.press("Enter")
    expect(page.locator("#users-body tr")).to_have_count(1)
    # Tab from the filters into the table: the row's checkbox, then the name, which opens the detail.
    page.get_by_label("Select User 00006").focus()
    page.keyboard.press("Space")
    expect(page.get_by_role("button", name="Apply to 1 selected")).to_be_enabled()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="User 00006")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#detail")).to_be_focused()
    page.keyboard.press("Tab")  # the first action: Sync now
    expect(page.locator("#detail").get_by_role("button", name="Sync now")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#detail-status")).to_have_text("Sync now: done.")
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="User 00006")).to_be_focused()
    # Sorting by keyboard: the column button, and aria-sort tells which way.
    sort = page.get_by_role("button", name="Salesforce username")
    sort.focus()
    page.keyboard.press("Enter")
    expect(page.locator("th[data-sort=username]")).to_have_attribute("aria-sort", "ascending")
    page.keyboard.press("Enter")
    expect(page.locator("th[data-sort=username]")).to_have_attribute("aria-sort", "descending")
    console.assert_clean(allowed_statuses=(401,))


def test_a_non_admin_is_told_and_the_menu_shows_administration_to_admins(
        make_pane: Callable[..., Pane], live_server: LiveServer, org: dict[str, str], pane: Pane) -> None:
    console = console_sign_in(make_pane, live_server, "alice@acme.example", "alice-pw")
    expect(console.page.get_by_role("heading", name="You are not an administrator")).to_be_visible()
    axe_violations(console.page, "the not-an-administrator view")
    console.page.get_by_role("button", name="Log out").click()
    expect(console.page.get_by_role("heading", name="Sign in")).to_be_visible()
    axe_violations(console.page, "the sign-in view")

    page = pane.open()
    pane.login("ada@acme.example", "ada-pw")
    page.get_by_role("button", name="Menu").click()
    item = page.get_by_role("menuitem", name="Administration")
    expect(item).to_be_visible()
    with pane.context.expect_page() as opened:
        item.click()
    assert opened.value.url.startswith(f"{live_server.url}/admin")
    log = page.evaluate("() => window.__OFFICE_STANDIN_LOG__")
    assert [e["url"] for e in log if e["call"] == "openBrowserWindow"] == [f"{live_server.url}/admin"]
