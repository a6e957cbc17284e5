"""The task pane in Chromium: login through the dialog, menu, errors, width, console and CSP."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import requests
from playwright.sync_api import Page, Request, expect

from sandbox.tls import TestCA
from tests.browser.conftest import SCREENSHOTS, WIDTH, LiveServer, Pane
from tests.conftest import RunningFake

pytestmark = pytest.mark.browser


def api(server: LiveServer, ca: TestCA, method: str, path: str, token: str, **kwargs: Any) -> requests.Response:
    """Call the live server's API as another client would."""
    return requests.request(method, f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"},
                            verify=ca.ca_path, timeout=10, **kwargs)


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def no_horizontal_overflow(page: Page) -> None:
    """Nothing is wider than the pane (no sideways scrolling at 320 px)."""
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= WIDTH, f"page is {width}px wide"
    wide = page.evaluate(
        """(limit) => Array.from(document.querySelectorAll('body *'))
             .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > limit + 0.5)
             .map((el) => el.id || el.className || el.tagName)""",
        WIDTH,
    )
    assert wide == [], f"elements past the right edge: {wide}"


def test_login_through_dialog_shows_menu_with_set_up_sync(pane: Pane, live_server: LiveServer) -> None:
    """First open shows Log in; the dialog logs in against the fake; the menu offers Set up sync."""
    page = pane.open()
    expect(page.get_by_role("heading", name="Log in to Salesforce")).to_be_visible()
    expect(page.locator("#app-header")).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "login.png"))

    pane.login()
    warning = page.locator("#home-not-activated")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Key sidebar features are unavailable until sync is activated")
    expect(page.locator("#home-state-label")).to_have_text("Sync is not activated")
    # The dialog was opened the Office way, on the pane's own origin, and closed by the pane.
    log = page.evaluate("() => window.__OFFICE_STANDIN_LOG__")
    opened = [entry for entry in log if entry["call"] == "displayDialogAsync"]
    assert len(opened) == 1
    # The pane's challenge binds the dialog's code to this pane (issue 18).
    assert re.fullmatch(re.escape(f"{live_server.url}/auth/salesforce/start?env=production&pane_challenge=")
                        + "[A-Za-z0-9_-]{43}", opened[0]["url"])
    assert opened[0]["options"] == {"height": 60, "width": 30, "promptBeforeOpen": False}
    assert any(entry["call"] == "dialog.close" for entry in log)
    assert len(pane.context.pages) == 1

    menu_button = page.get_by_role("button", name="Menu")
    box = menu_button.bounding_box()
    assert box is not None and box["x"] < 20 and box["y"] < 20, f"menu button not in the upper-left corner: {box}"
    menu_button.click()
    expect(page.get_by_role("menuitem", name="Set up sync")).to_be_visible()
    expect(page.locator("#menu-account-name")).to_have_text("alice@acme.example")
    expect(page.locator("#menu-account-env")).to_have_text("Production")
    expect(page.get_by_role("menuitem", name="Switch account")).to_be_visible()
    expect(page.get_by_role("menuitem", name="Log out")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "taskpane.png"))

    page.get_by_role("menuitem", name="Set up sync").click()
    expect(page.get_by_role("heading", name="Sync settings")).to_be_focused()
    page.evaluate("() => window.scrollTo(0, 0)")  # the sticky header belongs at the top of a full-page shot
    page.screenshot(path=str(SCREENSHOTS / "sync-settings.png"), full_page=True)
    # The session survives a reload (the token is kept in localStorage).
    page.reload()
    expect(page.get_by_role("heading", name="Sync settings")).to_be_visible()
    pane.assert_clean()


def test_narrow_pane_has_no_horizontal_overflow(pane: Pane) -> None:
    """At 320 px nothing overflows sideways, on every view and with errors and options shown."""
    page = pane.open()
    no_horizontal_overflow(page)
    page.get_by_role("radio", name="My Domain").check()
    no_horizontal_overflow(page)
    page.get_by_role("radio", name="Production").check()
    pane.login()
    no_horizontal_overflow(page)
    page.get_by_role("button", name="Menu").click()
    no_horizontal_overflow(page)
    page.get_by_role("menuitem", name="Set up sync").click()
    page.get_by_role("button", name="More").click()
    page.get_by_role("button", name="Connect to Exchange").click()  # empty form: errors shown
    expect(page.locator("#exchange-login-error")).not_to_be_empty()
    page.get_by_label("Never log these addresses or domains").fill("x" * 300)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#set-blocklist-error")).not_to_be_empty()
    no_horizontal_overflow(page)
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Switch account").click()
    page.get_by_role("radio", name="My Domain").check()
    no_horizontal_overflow(page)
    pane.assert_clean(allowed_statuses=(400,))


def test_menu_works_by_keyboard(pane: Pane) -> None:
    """The menu opens from the keyboard, arrows move, Escape closes and focus returns to the button."""
    page = pane.open()
    pane.login()
    button = page.get_by_role("button", name="Menu")
    menu = page.get_by_role("menu")
    button.focus()
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("menuitem", name="Set up sync")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Switch account")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Log out")).to_be_focused()
    page.keyboard.press("ArrowDown")
    everywhere = page.get_by_role("menuitem", name="Sign out on all devices")  # issue 18: the last item
    expect(everywhere).to_be_focused()
    page.keyboard.press("ArrowDown")  # wraps
    expect(page.get_by_role("menuitem", name="Set up sync")).to_be_focused()
    page.keyboard.press("ArrowUp")  # wraps back
    expect(everywhere).to_be_focused()
    page.keyboard.press("Home")
    expect(page.get_by_role("menuitem", name="Set up sync")).to_be_focused()
    page.keyboard.press("End")
    expect(everywhere).to_be_focused()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(button).to_have_attribute("aria-expanded", "false")
    expect(button).to_be_focused()
    page.keyboard.press("ArrowUp")  # opens on the last item
    expect(everywhere).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Set up sync")).to_be_focused()
    page.keyboard.press("Enter")
    # The view changed: focus moved to its heading, so a screen reader announces where we are.
    expect(page.get_by_role("heading", name="Sync settings")).to_be_focused()
    expect(menu).to_be_hidden()
    # Back to home with the keyboard, then the menu closes on Tab as well.
    page.get_by_role("button", name="Back").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sync", exact=True)).to_be_focused()
    button.focus()
    page.keyboard.press("Space")
    expect(menu).to_be_visible()
    page.keyboard.press("Tab")
    expect(menu).to_be_hidden()
    pane.assert_clean()


def test_api_error_is_shown_next_to_the_control(pane: Pane) -> None:
    """An invalid blocklist entry: the server's message appears under the field, linked to it."""
    page = pane.open("#sync-settings")
    pane.login()
    expect(page.get_by_role("heading", name="Sync settings")).to_be_visible()
    field = page.get_by_label("Never log these addresses or domains")
    field.fill("partner.example\nnot@@an-address")
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator("#set-blocklist-error")
    expect(error).to_have_text("Line 2 (not@@an-address) is not an email address or domain.")
    expect(field).to_have_attribute("aria-invalid", "true")
    assert "set-blocklist-error" in (field.get_attribute("aria-describedby") or "").split()
    expect(field).to_be_focused()
    # Fixing it clears the error; saving works and the list comes back normalised.
    field.fill("Partner.example\n@Rival.example\nceo@acme.example")
    expect(error).to_be_empty()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#settings-save-status")).to_have_text("Saved.")
    expect(field).to_have_value("partner.example\nrival.example\nceo@acme.example")
    expect(field).not_to_have_attribute("aria-invalid", "true")
    # Client-side checks speak next to their field too.
    page.get_by_role("button", name="Connect to Exchange").click()
    login = page.get_by_role("textbox", name="Login")
    expect(page.locator("#exchange-login-error")).to_have_text("Enter your login: your email address or DOMAIN\\user.")
    expect(login).to_be_focused()
    expect(login).to_have_attribute("aria-invalid", "true")
    pane.assert_clean(allowed_statuses=(400,))


def test_revoked_session_brings_back_login_with_the_reason(
    pane: Pane, live_server: LiveServer, ca: TestCA
) -> None:
    """A 401 from any call drops the token and shows the login view with the server's reason."""
    page = pane.open("#sync-settings")
    pane.login()
    token = pane.token()
    assert token
    assert api(live_server, ca, "DELETE", "/api/session", token).status_code == 204  # logged out elsewhere
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Log in to Salesforce")).to_be_focused()
    expect(page.locator("#login-reason")).to_contain_text("You were logged out. Log in to Salesforce again.")
    expect(page.locator("#app-header")).to_be_hidden()
    assert pane.token() is None
    # Logging in again works and clears the reason.
    pane.login()
    expect(page.locator("#login-reason")).to_be_hidden()
    pane.assert_clean(allowed_statuses=(401,))


def test_session_ending_while_switching_accounts_shows_the_plain_login(
    pane: Pane, live_server: LiveServer, ca: TestCA
) -> None:
    """Logged out elsewhere while on Switch account: the login view with the reason, said once."""
    page = pane.open()
    pane.login()
    token = pane.token()
    assert token
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Switch account").click()
    assert api(live_server, ca, "DELETE", "/api/session", token).status_code == 204
    page.get_by_role("button", name="Log in to Salesforce").click()
    expect(page.get_by_role("heading", name="Log in to Salesforce")).to_be_focused()
    expect(page.locator("#login-reason")).to_contain_text("You were logged out.")
    expect(page.locator("#login-error")).to_be_empty()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    assert pane.token() is None
    pane.assert_clean(allowed_statuses=(401,))


def test_revoked_salesforce_login_brings_back_login_with_the_reason(
    pane: Pane, fake_salesforce: RunningFake, redis_client: redis.Redis
) -> None:
    """Salesforce refusing the refresh token puts the person back on Log in, saying why."""
    page = pane.open()
    pane.login()
    fake_salesforce.state.revoke_refresh_tokens("alice@acme.example")
    for key in redis_client.scan_iter("*salesforce-check*"):
        redis_client.delete(key)  # the server checks the login at most every few minutes
    page.reload()
    expect(page.get_by_role("heading", name="Log in to Salesforce")).to_be_visible()
    expect(page.locator("#login-reason")).to_contain_text("Salesforce no longer accepts your login")
    assert pane.token() is None
    pane.assert_clean(allowed_statuses=(401,))


def test_no_console_errors_no_csp_violations_no_inline_code(pane: Pane, live_server: LiveServer, ca: TestCA) -> None:
    """A whole visit (login, menu, settings, save, log out) is clean under the real CSP."""
    response = requests.get(f"{live_server.url}/taskpane.html", verify=ca.ca_path, timeout=10)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self' https://appsforoffice.microsoft.com https://alcdn.msauth.net" in csp
    assert "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors" in csp and "X-Frame-Options" not in response.headers

    page = pane.open()
    pane.login()
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Set up sync").click()
    page.get_by_role("button", name="More").click()
    page.get_by_label("Meetings and events").uncheck()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#settings-save-status")).to_have_text("Saved.")
    inline = page.evaluate(
        """() => ({
             scripts: document.querySelectorAll('script:not([src])').length,
             styles: document.querySelectorAll('[style], style').length,
             handlers: Array.from(document.querySelectorAll('*')).flatMap((el) =>
               Array.from(el.attributes).filter((a) => a.name.startsWith('on')).map((a) => a.name)),
           })"""
    )
    assert inline == {"scripts": 0, "styles": 0, "handlers": []}
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Log out").click()
    expect(page.locator("#login-status")).to_have_text("You are logged out. Sync keeps running on the server.")
    pane.assert_clean()


def test_deep_link_opens_sync_settings(pane: Pane) -> None:
    """taskpane.html#sync-settings opens Sync settings, after login when needed, and on later loads."""
    page = pane.open("#sync-settings")
    expect(page.get_by_role("heading", name="Log in to Salesforce")).to_be_visible()
    pane.login()
    expect(page.get_by_role("heading", name="Sync settings")).to_be_visible()
    page.get_by_role("button", name="Back").click()
    expect(page).not_to_have_url(r".*#sync-settings$")
    page.goto(f"{pane.base_url}/taskpane.html#sync-settings")
    expect(page.get_by_role("heading", name="Sync settings")).to_be_visible()
    pane.assert_clean()


def test_switch_account_and_log_out(
    pane: Pane, live_server: LiveServer, fake_salesforce: RunningFake, ca: TestCA
) -> None:
    """Switch account signs in again through a ticketed dialog; the old session ends; Log out ends the new one."""
    fake_salesforce.state.add_user("bob@acme.example", "bob-pw", name="Bob Example")
    page = pane.open()
    pane.login()
    first = pane.token()
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Switch account").click()
    expect(page.get_by_role("heading", name="Switch Salesforce account")).to_be_focused()
    expect(page.get_by_role("radio", name="Production")).to_be_checked()  # the current account's
    pane.sign_in_dialog(page.get_by_role("button", name="Log in to Salesforce").click, "bob@acme.example", "bob-pw")
    expect(page.locator("#app-status")).to_have_text("Logged in to Salesforce as bob@acme.example.")
    expect(page.locator("#menu-account-name")).to_have_text("bob@acme.example")
    expect(page.get_by_role("button", name="Menu")).to_be_focused()
    log = page.evaluate("() => window.__OFFICE_STANDIN_LOG__")
    urls = [entry["url"] for entry in log if entry["call"] == "displayDialogAsync"]
    assert urls[1].startswith(f"{live_server.url}/auth/salesforce/start?ticket=")
    assert urls[1].endswith("&env=production")
    second = pane.token()
    assert second and second != first
    assert first is not None
    # The old session is ended by the pane (a DELETE sent after the new session exists).
    assert eventually(lambda: api(live_server, ca, "GET", "/api/me", first).status_code == 401)
    assert api(live_server, ca, "GET", "/api/me", second).status_code == 200

    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Salesforce")).to_be_focused()
    assert pane.token() is None
    assert api(live_server, ca, "GET", "/api/me", second).status_code == 401
    pane.assert_clean()


def test_switch_account_can_change_the_environment_or_be_cancelled(pane: Pane, live_server: LiveServer,
                                                                   ca: TestCA) -> None:
    """Switch account offers the environments of the login screen; Cancel keeps the current session."""
    page = pane.open()
    pane.login()
    first = pane.token()
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Switch account").click()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#app-header")).to_be_visible()
    expect(page.get_by_role("button", name="Menu")).to_be_focused()
    assert pane.token() == first

    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Switch account").click()
    page.get_by_role("radio", name="My Domain").check()
    page.get_by_role("button", name="Log in to Salesforce").click()
    expect(page.locator("#login-domain-error")).to_have_text(
        "Enter your My Domain, for example acme.my.salesforce.com.")
    page.get_by_role("radio", name="Sandbox").check()
    pane.sign_in_dialog(page.get_by_role("button", name="Log in to Salesforce").click, "alice@acme.example", "alice-pw")
    expect(page.locator("#app-header")).to_be_visible(timeout=15_000)
    log = page.evaluate("() => window.__OFFICE_STANDIN_LOG__")
    urls = [entry["url"] for entry in log if entry["call"] == "displayDialogAsync"]
    assert urls[-1].startswith(f"{live_server.url}/auth/salesforce/start?ticket=") and urls[-1].endswith("&env=sandbox")
    assert pane.token() != first
    # Cancel while the dialog is still open: signing in there afterwards switches nothing.
    second = pane.token()
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Switch account").click()
    with pane.context.expect_page() as popup_info:
        page.get_by_role("button", name="Log in to Salesforce").click()
    popup = popup_info.value
    popup.wait_for_load_state("domcontentloaded")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#app-header")).to_be_visible()
    popup.fill("#username", "alice@acme.example")
    popup.fill("#password", "alice-pw")
    with popup.expect_event("close"):
        popup.click("#Login", no_wait_after=True)
    # The sign-in attempt has ended (its button is no longer busy) and changed nothing.
    expect(page.locator("#login-button")).not_to_have_attribute("aria-busy", "true")
    expect(page.locator("#app-header")).to_be_visible()
    assert pane.token() == second
    assert api(live_server, ca, "GET", "/api/me", second).status_code == 200
    # Logged out later, the login screen is the first-login one again.
    page.get_by_role("button", name="Menu").click()
    page.get_by_role("menuitem", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in to Salesforce")).to_be_focused()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    pane.assert_clean()


def test_dialog_closed_by_the_person_says_so(pane: Pane) -> None:
    """Closing the sign-in window is reported in words next to the button; the button works again."""
    page = pane.open()
    with pane.context.expect_page() as popup_info:
        page.get_by_role("button", name="Log in to Salesforce").click()
    popup_info.value.close()
    expect(page.locator("#login-error")).to_have_text("The sign-in window was closed before you finished.")
    button = page.get_by_role("button", name="Log in to Salesforce")
    expect(button).to_be_enabled()
    assert "login-error" in (button.get_attribute("aria-describedby") or "")
    pane.assert_clean()


def test_my_domain_errors_are_shown_next_to_the_domain_field(pane: Pane) -> None:
    """My Domain needs a domain; one the server refuses comes back from the dialog next to the field."""
    page = pane.open()
    page.get_by_role("radio", name="My Domain").check()
    domain = page.get_by_role("textbox", name="My Domain")
    expect(domain).to_be_focused()
    page.get_by_role("button", name="Log in to Salesforce").click()
    expect(page.locator("#login-domain-error")).to_have_text(
        "Enter your My Domain, for example acme.my.salesforce.com.")
    assert len(pane.context.pages) == 1  # no dialog for an empty domain
    domain.fill("intranet.example.com")
    with pane.context.expect_page():
        page.get_by_role("button", name="Log in to Salesforce").click()
    expect(page.locator("#login-domain-error")).to_have_text("intranet.example.com is not a Salesforce domain.")
    expect(domain).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("button", name="Log in to Salesforce")).to_be_enabled()
    pane.assert_clean(allowed_statuses=(400,))


def test_mailbox_proof_required_is_explained(
    serve_app: Callable[..., LiveServer], make_pane: Callable[..., Pane]
) -> None:
    """When the server insists on a proof and Outlook offers none, the pane says so."""
    server = serve_app(REQUIRE_MAILBOX_PROOF="on")
    pane = make_pane(server, office={"accountType": "office365"})
    page = pane.open()
    pane.sign_in_dialog(page.get_by_role("button", name="Log in to Salesforce").click, "alice@acme.example", "alice-pw")
    expect(page.locator("#login-error")).to_have_text(
        "Outlook did not confirm which mailbox this is. Reopen the add-in and try again.")
    expect(page.locator("#app-header")).to_be_hidden()
    pane.assert_clean(allowed_statuses=(401,))


def test_nested_app_auth_proof_verifies_the_mailbox(
    serve_app: Callable[..., LiveServer],
    make_pane: Callable[..., Pane],
    fake_microsoft: RunningFake,
    ca: TestCA,
) -> None:
    """Where the host supports NAA, MSAL's token for our API goes with the login and verifies the mailbox."""
    server = serve_app(REQUIRE_MAILBOX_PROOF="on")
    office = {"accountType": "office365", "requirementSets": {"Mailbox": "1.13", "NestedAppAuth": "1.1"}}
    pane = make_pane(server, office=office, msal={"token": fake_microsoft.state.naa_token("alice@acme.example"),
                                                   "silentFails": True})
    page = pane.open()
    pane.login()
    msal_log = page.evaluate("() => window.__MSAL_STANDIN_LOG__")
    calls = [entry["call"] for entry in msal_log]
    assert calls == ["createNestablePublicClientApplication", "acquireTokenSilent", "acquireTokenPopup"]
    assert msal_log[0]["clientId"] == fake_microsoft.state.client_id
    token = pane.token()
    assert token
    me = api(server, ca, "GET", "/api/me", token).json()
    assert me["mailbox"] == {"address": "alice@acme.example", "verified": True, "proof": "naa"}
    pane.assert_clean()


def test_exchange_identity_token_is_sent_on_premises(
    serve_app: Callable[..., LiveServer], make_pane: Callable[..., Pane]
) -> None:
    """On-premises (no NAA), the Exchange identity token is asked for and sent as the proof."""
    server = serve_app()
    pane = make_pane(server, office={"accountType": "enterprise", "identityToken": "not-a-real-token"})
    sent: list[Any] = []

    def record(request: Request) -> None:
        if request.url.endswith("/api/session"):
            sent.append(request.post_data_json)

    pane.context.on("request", record)
    page = pane.open()
    pane.sign_in_dialog(page.get_by_role("button", name="Log in to Salesforce").click, "alice@acme.example", "alice-pw")
    # The server checks the proof it is given: this one is not a real token, and the pane says so.
    expect(page.locator("#login-error")).not_to_be_empty()
    calls = [entry["call"] for entry in page.evaluate("() => window.__OFFICE_STANDIN_LOG__")]
    assert "getUserIdentityTokenAsync" in calls
    # The verifier whose hash was in the dialog's start URL goes with the code (issue 18).
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sent[0]["verifier"])
    assert sent == [{"code": sent[0]["code"], "mailbox": "alice@acme.example", "verifier": sent[0]["verifier"],
                     "mailbox_proof": "not-a-real-token"}]
    pane.assert_clean(allowed_statuses=(401,))


def test_plain_browser_without_office_can_log_in(
    live_server: LiveServer, make_pane: Callable[..., Pane]
) -> None:
    """Opened outside Outlook (office.js present but no host), the pane asks for the mailbox and logs in."""
    pane = make_pane(live_server)
    # office.js that knows no host: Office.onReady resolves with host null, no mailbox, no dialog API.
    pane.context.route(
        "https://appsforoffice.microsoft.com/**",
        lambda route: route.fulfill(
            status=200, content_type="application/javascript",
            body="window.Office = {context: {}, onReady: (cb) => Promise.resolve({host: null, platform: null})"
                 ".then((i) => { if (cb) cb(i); return i; })};",
        ),
    )
    page = pane.open()
    mailbox = page.get_by_label("Your mailbox address")
    expect(mailbox).to_be_visible()
    page.get_by_role("button", name="Log in to Salesforce").click()
    expect(page.locator("#login-mailbox-error")).to_have_text("Enter the email address of the mailbox to sync.")
    mailbox.fill("alice@acme.example")
    pane.login()
    expect(page.locator("#home-state-label")).to_have_text("Sync is not activated")
    pane.assert_clean()


def test_dialog_page_outside_office_is_left_as_is(pane: Pane, live_server: LiveServer) -> None:
    """A dialog's last page opened by itself (no Office dialog, no opener) shows its message and sends nothing."""
    page = pane.page
    page.goto(f"{live_server.url}/auth/salesforce/callback?state=forged&code=x")
    expect(page.get_by_role("heading", name="Sign-in did not complete")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Start the sign-in again")
    page.wait_for_timeout(200)
    log = page.evaluate("() => window.__OFFICE_STANDIN_LOG__")
    assert not [entry for entry in log if entry["call"] == "DialogMessageReceived"]
    pane.assert_clean(allowed_statuses=(400,))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (12007, "A sign-in window is already open. Finish or close it first."),
        (12009, "The sign-in window was blocked. Allow it when Outlook asks, then try again."),
        (12345, "The sign-in window could not be used (error 12345). Try again."),
    ],
)
def test_dialog_that_cannot_open_is_explained(
    live_server: LiveServer, make_pane: Callable[..., Pane], code: int, message: str
) -> None:
    """displayDialogAsync failing (already open, blocked, anything else) is said in words."""
    pane = make_pane(live_server, office={"dialogError": code})
    page = pane.open()
    page.get_by_role("button", name="Log in to Salesforce").click()
    expect(page.locator("#login-error")).to_have_text(message)
    expect(page.get_by_role("button", name="Log in to Salesforce")).to_be_enabled()
    pane.assert_clean()


@pytest.mark.parametrize("google", [False, True])
def test_gmail_is_offered_only_when_the_server_can_sync_it(
    serve_app: Callable[..., LiveServer], make_pane: Callable[..., Pane], google: bool
) -> None:
    """The Gmail section shows once a Google client is configured, and not before (no dead button)."""
    overrides = {"GOOGLE_CLIENT_ID": "google-client", "GOOGLE_CLIENT_SECRET": "google-secret"} if google else {}
    pane = make_pane(serve_app(**overrides))
    page = pane.open("#sync-settings")
    pane.login()
    expect(page.get_by_role("heading", name="Sync settings")).to_be_visible()
    gmail = page.get_by_role("button", name="Connect Gmail")
    expect(gmail).to_be_visible() if google else expect(gmail).to_be_hidden()
    expect(page.get_by_role("button", name="Connect Microsoft 365")).to_be_visible()
    pane.assert_clean()


def test_a_mailbox_held_off_by_the_administrator_says_so(pane: Pane, live_server: LiveServer) -> None:
    """The administrator disabled the mailbox: reconnecting says who turned sync off and whom to ask."""
    page = pane.open("#sync-settings")
    pane.login()
    from backend.extensions import services

    with live_server.app.app_context():
        store = services().store
        (uid,) = store.users.all_ids()
        store.mailboxes.ensure(uid, store.users.get(uid).org_id)  # type: ignore[union-attr]
        store.mailboxes.activate(uid, "exchange", "alice@acme.example")
        store.mailboxes.admin_disable(uid, "Your administrator turned sync off for this mailbox.")
    page = pane.open("#sync-settings")
    page.get_by_role("textbox", name="Login").fill("alice@acme.example")
    page.get_by_label("Password").fill("Correct-Horse-42!")
    page.get_by_role("button", name="Connect to Exchange").click()
    expect(page.locator("#exchange-error")).to_have_text(
        "Your administrator turned sync off for this mailbox. Ask them to turn it back on.")
    pane.assert_clean(allowed_statuses=(403,))


def test_a_held_mailbox_asks_for_the_administrator_without_a_reconnect(pane: Pane, live_server: LiveServer) -> None:
    """The administrator disabled the mailbox: home and Sync settings say whom to ask and offer no Reconnect."""
    page = pane.open()
    pane.login()
    from backend.extensions import services

    with live_server.app.app_context():
        store = services().store
        (uid,) = store.users.all_ids()
        store.mailboxes.ensure(uid, store.users.get(uid).org_id)  # type: ignore[union-attr]
        store.mailboxes.activate(uid, "exchange", "alice@acme.example")
        store.mailboxes.admin_disable(uid, "Your administrator turned sync off for this mailbox.")
    page = pane.open()
    asked = "Your administrator turned sync off for this mailbox. Ask them to turn it back on."
    expect(page.locator("#home-disabled-text")).to_have_text(asked)
    expect(page.locator("#home-reconnect")).to_be_hidden()
    page = pane.open("#sync-settings")
    expect(page.locator("#settings-disabled-text")).to_have_text(asked)
    expect(page.locator("#settings-reconnect")).to_be_hidden()
    expect(page.locator("#next-run")).to_have_text("None until your administrator turns sync back on")
    expect(page.locator("#connect-heading")).to_have_text("Mailbox connection")
    expect(page.locator("#connect-intro")).to_contain_text("only they can turn it back on")
    expect(page.get_by_role("button", name="Reconnect")).to_have_count(0)
    pane.assert_clean()


def test_save_sends_only_what_the_person_changed(pane: Pane, live_server: LiveServer) -> None:
    """Editing the blocklist saves the blocklist: the org's defaults the form shows keep following the admin."""
    page = pane.open("#sync-settings")
    pane.login()
    from backend.extensions import services

    with live_server.app.app_context():
        store = services().store
        (uid,) = store.users.all_ids()
        org_id = store.users.get(uid).org_id  # type: ignore[union-attr]
        store.mailboxes.ensure(uid, org_id)
        store.mailboxes.activate(uid, "exchange", "alice@acme.example")
    page = pane.open("#sync-settings")
    page.locator("#set-blocklist").fill("noisy@vendor.example")
    with page.expect_request(lambda r: r.url.endswith("/api/sync/settings") and r.method == "PUT") as sent:
        page.locator("#settings-save").click()
    assert sent.value.post_data_json == {"blocklist": ["noisy@vendor.example"]}
    expect(page.locator("#settings-save-status")).to_have_text("Saved.")
    with live_server.app.app_context():
        services().store.orgs.update(org_id, sync_events=False)  # the administrator's new default
    page.reload()  # the same URL with its fragment: pane.open would not load it again
    expect(page.locator("#set-events")).not_to_be_checked()
    pane.assert_clean()
