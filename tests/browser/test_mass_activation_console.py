"""The console's Mailbox access and Activate views in Chromium, for Microsoft 365.

The whole path (issue 12's done-when): the admin grants the tenant's consent in the console,
activates three people, watches the progress and the per-person results; a real ``rq worker``
process runs the activation and then each person's first run against the fakes; the fake
Salesforce holds each person's email created by that person. One of them then sees in the task
pane why Deactivate (and, once the admin's policy says so, Pause) is not offered.

A second test covers the other results, the CSV link and turning sync off again; axe-core reports
no violation on either view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from backend.extensions import services
from backend.store.users import user_id_for
from backend.sync.mass import MESSAGES
from backend.sync.mass_controls import MESSAGES as LOCKED
from sandbox.harness.graph import GraphHarness
from sandbox.tls import CertPair, TestCA
from tests.browser.conftest import SCREENSHOTS, LiveServer, Pane, axe_violations
from tests.browser.mass_steps import (
    add_salesforce_person,
    assert_created_by,
    console_sign_in,
    open_view,
    pane_for,
    results_table,
    run_activation_here,
    running_worker,
    start_activation,
    sync_now_from_console,
    wait_for_progress,
    wait_for_runs,
)
from tests.mass_env import JWT_KEYS, ORG, address, seed

pytestmark = pytest.mark.browser
CUSTOMER = "customer@client.example"


@pytest.fixture
def tenant(server_cert: CertPair, ca: TestCA) -> Iterator[GraphHarness]:
    """A fake Microsoft 365 tenant whose administrator consented."""
    harness = GraphHarness(server_cert, ca.ca_path, app_only=True)
    yield harness
    harness.close()


def add_m365_person(sf: Any, tenant: GraphHarness, name: str) -> str:
    """A person in Salesforce and in the tenant, inside the app's RBAC scope; returns their Salesforce user id."""
    sf_id = add_salesforce_person(sf, address(name), name.capitalize())
    tenant.ms.add_user(address(name), tenant.user.tid)
    tenant.graph.mailbox(address(name))
    scoped = tenant.ms.tenant(tenant.user.tid)
    scoped.app_access_scope = frozenset({*scoped.app_access_scope, address(name)})
    return sf_id


def test_three_people_activated_in_the_console_are_synced_by_a_worker_as_themselves(
        make_pane: Callable[..., Pane], serve_app: Callable[..., LiveServer], fake_salesforce: Any,
        tenant: GraphHarness, tmp_path: Path) -> None:
    fake_salesforce.state.add_user("ada@acme.example", "ada-pw", name="Ada Admin", is_admin=True)
    seed(fake_salesforce, tenant)  # bob and jill are in the tenant's scope
    add_m365_person(fake_salesforce, tenant, "kim")
    names = ["bob", "jill", "kim"]
    fake_salesforce.state.rest.add_contact(CUSTOMER)
    for name in names:
        tenant.graph.add_message(address(name), subject=f"Quote for {name}", sender=CUSTOMER, to=[address(name)])
    server = serve_app(**tenant.settings_overrides(), SALESFORCE_JWT_PRIVATE_KEY=JWT_KEYS[0])
    console = console_sign_in(make_pane, server, "ada@acme.example", "ada-pw")
    page = console.page

    # Mailbox access: the tenant administrator's consent, from the console.
    open_view(page, "Mailbox access")
    expect(page.locator("#access-ms-state")).to_have_text("Not granted yet")
    tenant.ms.auto_user = tenant.user.mail  # the fake's consent page: this tenant administrator accepts
    tenant.ms.authorize_mode = "approve"  # and signs in first (which proves the tenant)
    page.get_by_role("button", name="Grant admin consent").click()
    page.wait_for_url("**/auth/microsoft/admin-consent/callback**")
    page.goto(f"{server.url}/admin")
    open_view(page, "Mailbox access")
    expect(page.locator("#access-ms-state")).to_have_text("Granted: mailboxes can be read app-only")
    expect(page.locator("#access-ms-tenant")).to_have_text(tenant.user.tid)

    with running_worker(server, tmp_path) as worker:
        start_activation(page, [address(n) for n in names])
        seen = wait_for_progress(page, 3, worker)
        assert seen[-1] == "Done: 3 of 3 people" and all(" of 3 people" in line for line in seen), seen
        assert sorted(results_table(page)) == [(address(n), "Activated", MESSAGES["activated"]) for n in names]
        sync_now_from_console(page, [n.capitalize() for n in names])
        uids = [user_id_for(ORG, str(fake_salesforce.state.users[address(n)].user_id)) for n in names]
        runs = wait_for_runs(server, uids, worker)
    assert all(run["counts"]["written"] == 1 for run in runs.values()), runs
    assert_created_by(fake_salesforce, {f"Quote for {n}": str(fake_salesforce.state.users[address(n)].user_id)
                                        for n in names})

    # Bob's pane: Deactivate is not his to press (the default policy), and the pane says why.
    fake_salesforce.state.users[address("bob")].password = "bob-pw"
    bob = pane_for(make_pane, server, address("bob"), "bob-pw")

    def bob_settings() -> Any:
        bob.page.get_by_role("button", name="Menu").click()
        bob.page.get_by_role("menuitem", name="Sync settings").click()
        expect(bob.page.locator("#settings-state-label")).to_have_text("Sync is running \u2014 every 30 minutes")
        return bob.page

    pane = bob_settings()
    expect(pane.locator("#controls-policy")).to_have_text(LOCKED["deactivate"])
    expect(pane.locator("#sync-deactivate")).to_be_hidden()
    expect(pane.locator("#sync-pause")).to_be_visible()
    found = axe_violations(pane, "#view-settings")
    assert found == [], found

    # The admin's policy form: mass-activated people may not pause either.
    open_view(page, "Policy")
    page.get_by_label("They may pause sync").uncheck()
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#policy-status")).to_have_text("Policy saved.")
    pane.reload()
    expect(pane.locator("#view-loading")).to_be_hidden()
    pane = bob_settings()
    expect(pane.locator("#sync-pause")).to_be_hidden()
    expect(pane.locator("#controls-policy")).to_have_text(f"{LOCKED['pause']} {LOCKED['deactivate']}")
    expect(pane.locator("#sync-now")).to_be_visible()
    bob.assert_clean()
    console.assert_clean(allowed_statuses=(401,))  # /api/admin/session before signing in


def test_mailbox_access_and_activate_views(make_pane: Callable[..., Pane], serve_app: Callable[..., LiveServer],
                                           fake_salesforce: Any, tenant: GraphHarness) -> None:
    ada = fake_salesforce.state.add_user("ada@acme.example", "ada-pw", name="Ada Admin", is_admin=True)
    seed(fake_salesforce, tenant)
    server = serve_app(**tenant.settings_overrides(), SALESFORCE_JWT_PRIVATE_KEY=JWT_KEYS[0])
    with server.app.app_context():
        services().store.org_access.connect_microsoft(ORG, tenant.user.tid, user_id_for(ORG, ada.user_id))
    console = console_sign_in(make_pane, server, "ada@acme.example", "ada-pw")
    page = console.page

    open_view(page, "Mailbox access")
    expect(page.locator("#access-ms-state")).to_have_text("Granted: mailboxes can be read app-only")
    expect(page.locator("#access")).to_contain_text("New-ManagementRoleAssignment")
    expect(page.locator("#access")).to_contain_text("defeats that scope")
    found = axe_violations(page, "#access")
    assert found == [], found

    start_activation(page, ["bob@acme.example", "carol@acme.example", "hank@acme.example"])
    activation_id = run_activation_here(server)  # in this process: this test is about the views
    wait_for_progress(page, 3)
    assert [(a, r) for a, r, _ in results_table(page)] == [
        ("bob@acme.example", "Activated"), ("carol@acme.example", "No Salesforce user"),
        ("hank@acme.example", "Not authorised in Salesforce")]
    expect(page.get_by_role("link", name="Download the results (CSV)")).to_have_attribute(
        "href", f"/api/admin/activations/{activation_id}/results.csv")
    found = axe_violations(page, "#activate")
    assert found == [], found
    page.get_by_role("button", name="Turn sync off again for the people activated").click()
    expect(page.locator("#activate-undo-status")).to_have_text("Sync turned off for 1 person.")
    page.screenshot(path=str(SCREENSHOTS / "admin-activate.png"), full_page=False)
    console.assert_clean(allowed_statuses=(401,))  # /api/admin/session before signing in


def test_disconnecting_microsoft_asks_first_then_stops_everyone_read_with_it(
        make_pane: Callable[..., Pane], serve_app: Callable[..., LiveServer], fake_salesforce: Any,
        tenant: GraphHarness) -> None:
    ada = fake_salesforce.state.add_user("ada@acme.example", "ada-pw", name="Ada Admin", is_admin=True)
    seed(fake_salesforce, tenant)
    server = serve_app(**tenant.settings_overrides(), SALESFORCE_JWT_PRIVATE_KEY=JWT_KEYS[0])
    with server.app.app_context():
        services().store.org_access.connect_microsoft(ORG, tenant.user.tid, user_id_for(ORG, ada.user_id))
    console = console_sign_in(make_pane, server, "ada@acme.example", "ada-pw")
    page = console.page
    start_activation(page, ["bob@acme.example"])
    run_activation_here(server)
    wait_for_progress(page, 1)

    open_view(page, "Mailbox access")
    disconnect = page.locator("#access-ms-disconnect")
    expect(disconnect).to_be_visible()
    expect(page.locator("#access-ms-disconnect-confirm")).to_be_hidden()
    disconnect.click()
    # A confirmation first, the safe choice focused; Cancel puts focus back and changes nothing.
    expect(page.locator("#access-ms-disconnect-confirm")).to_be_visible()
    expect(page.locator("#access-ms-disconnect-no")).to_be_focused()
    assert disconnect.get_attribute("aria-expanded") == "true"
    found = axe_violations(page, "#access")
    assert found == [], found
    page.keyboard.press("Enter")
    expect(page.locator("#access-ms-disconnect-confirm")).to_be_hidden()
    expect(disconnect).to_be_focused()
    disconnect.click()
    page.get_by_role("button", name="Disconnect Microsoft 365").click()
    expect(page.locator("#access-ms-disconnect-status")).to_have_text(
        "Disconnected. Sync is off for the 1 person activated through it.")
    expect(page.locator("#access-ms-state")).to_have_text("Not granted yet")
    expect(disconnect).to_be_hidden()
    expect(page.locator("#access-ms-heading")).to_be_focused()
    with server.app.app_context():
        store = services().store
        bob = store.mailboxes.get(user_id_for(ORG, str(fake_salesforce.state.users["bob@acme.example"].user_id)))
        assert bob is not None and bob.state.value == "deactivated"
        assert store.org_access.get(ORG).microsoft_tenant == ""
    open_view(page, "Activate")
    expect(page.locator("#activate-provider-microsoft-state")).not_to_have_text("")
    open_view(page, "Audit log")
    page.click("#audit-refresh")
    expect(page.locator("#audit tbody tr").first).to_contain_text("Disconnected Microsoft 365")
    expect(page.locator("#audit tbody tr").nth(1)).to_contain_text("Activate")
    expect(page.locator("#audit tbody tr").nth(1)).to_contain_text("1 address(es) processed")
    console.assert_clean(allowed_statuses=(401,))
