"""The console's Mailbox access and Activate views in Chromium: the tenant's consent state and scoping guidance,
three people activated by pasting their addresses, progress n of N, the results table and CSV link, the
activated ones turned off again; axe-core
reports no violation on either view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from backend.extensions import services
from backend.jobs.activation import run_activation
from backend.jobs.context import use_app
from backend.store.users import user_id_for
from sandbox.harness.graph import GraphHarness
from sandbox.tls import CertPair, TestCA
from tests.browser.conftest import SCREENSHOTS, LiveServer, Pane, axe_violations
from tests.browser.test_admin_console import console_sign_in
from tests.mass_env import JWT_KEYS, ORG, seed

pytestmark = pytest.mark.browser


@pytest.fixture
def tenant(server_cert: CertPair, ca: TestCA) -> Iterator[GraphHarness]:
    """A fake Microsoft 365 tenant whose administrator consented."""
    harness = GraphHarness(server_cert, ca.ca_path, app_only=True)
    yield harness
    harness.close()


def test_mailbox_access_and_activate_views(make_pane: Callable[..., Pane], serve_app: Callable[..., LiveServer],
                                           fake_salesforce: Any, tenant: GraphHarness) -> None:
    ada = fake_salesforce.state.add_user("ada@acme.example", "ada-pw", name="Ada Admin", is_admin=True)
    seed(fake_salesforce, tenant)
    server = serve_app(**tenant.settings_overrides(), SALESFORCE_JWT_PRIVATE_KEY=JWT_KEYS[0])
    with server.app.app_context():
        services().store.org_access.connect_microsoft(ORG, tenant.user.tid, user_id_for(ORG, ada.user_id))
    console = console_sign_in(make_pane, server, "ada@acme.example", "ada-pw")
    page = console.page

    page.get_by_role("link", name="Mailbox access").click()
    expect(page.locator("#access-ms-state")).to_have_text("Granted: mailboxes can be read app-only")
    expect(page.locator("#access-ms-tenant")).to_have_text(tenant.user.tid)
    expect(page.locator("#access")).to_contain_text("New-ManagementRoleAssignment")
    expect(page.locator("#access")).to_contain_text("defeats that scope")
    found = axe_violations(page, "#access")
    assert found == [], found

    page.get_by_role("link", name="Activate").click()
    page.get_by_label("Email addresses").fill("bob@acme.example\ncarol@acme.example, hank@acme.example")
    page.get_by_role("button", name="Activate", exact=True).click()
    expect(page.locator("#activate-progress")).to_contain_text("of 3 people")
    with server.app.app_context():
        store = services().store
        (key,) = [k for k in store.redis.keys(store.keys("activation", "act*")) if not k.endswith(("s",))]
        use_app(server.app)
        try:
            run_activation(key.rsplit(":", 1)[-1])
        finally:
            use_app(None)
    expect(page.locator("#activate-progress")).to_have_text("Done: 3 of 3 people")
    rows = page.locator("#activate-body tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Activated")
    expect(rows.nth(1)).to_contain_text("No Salesforce user")
    expect(rows.nth(2)).to_contain_text("Not authorised in Salesforce")
    expect(page.get_by_role("link", name="Download the results (CSV)")).to_have_attribute(
        "href", f"/api/admin/activations/{key.rsplit(':', 1)[-1]}/results.csv")
    found = axe_violations(page, "#activate")
    assert found == [], found
    page.get_by_role("button", name="Turn sync off again for the people activated").click()
    expect(page.locator("#activate-undo-status")).to_have_text("Sync turned off for 1 person.")
    page.screenshot(path=str(SCREENSHOTS / "admin-activate.png"), full_page=False)
    console.assert_clean(allowed_statuses=(401,))  # /api/admin/session before signing in
