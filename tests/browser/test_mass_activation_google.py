"""The console's Google Workspace access in Chromium, and three people activated through it synced by a real worker.

The admin uploads the service account's JSON key (the file input, read with FileReader) and the
Workspace domain, sees the client id and the two scopes the Workspace administrator must
authorise, and presses Test. The admin activates three people with the Activate view's provider picker
set to Google Workspace and watches the progress and results; a real ``rq worker`` process runs it and each
person's first run against the fakes, and the fake Salesforce holds each person's email created by
that person.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from backend.connectors.google.delegation import DELEGATED_SCOPES
from backend.store.users import user_id_for
from sandbox.google_delegation import key_file_text, new_service_account_key
from tests.browser.conftest import LiveServer, Pane, axe_violations
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
from tests.conftest import GoogleFake
from tests.mass_env import DOMAIN, JWT_KEYS, ORG, address

pytestmark = pytest.mark.browser
CUSTOMER = "customer@client.example"
SA_EMAIL = "sidebar-sync@acme-sync.iam.gserviceaccount.com"
CLIENT_ID = "113456789012345678901"
NAMES = ["bob", "jill", "kim"]


def seed(fake_salesforce: Any, google: GoogleFake, tmp_path: Path) -> Path:
    """Ada (an admin) and three people in Salesforce and the Workspace; the key file on disk (as downloaded)."""
    fake_salesforce.state.add_user("ada@acme.example", "ada-pw", name="Ada Admin", is_admin=True)
    fake_salesforce.state.jwt_certificates.append(JWT_KEYS[1])
    fake_salesforce.state.rest.add_contact(CUSTOMER)
    state = google.google
    state.delegation.domains.add(DOMAIN)
    for name in ["ada", *NAMES]:
        if name != "ada":
            add_salesforce_person(fake_salesforce, address(name), name.capitalize())
        state.add_user(address(name), display_name=name.capitalize())
        google.gmail.mailbox(address(name))
        google.calendar.calendar(address(name))
    for name in NAMES:
        google.gmail.add_message(address(name), ["INBOX", "UNREAD"], subject=f"Quote for {name}", sender=CUSTOMER,
                                 to=[address(name)])
    state.authorise_delegation(CLIENT_ID, DELEGATED_SCOPES)
    key = tmp_path / "sidebar-sync-key.json"
    key.write_text(key_file_text(new_service_account_key(state.delegation, SA_EMAIL, CLIENT_ID)))
    return key


def choose_google(page: Page) -> None:
    """The Activate picker: Google Workspace."""
    page.get_by_role("radio", name="Google Workspace").check()


def test_the_admin_sets_up_google_and_three_people_are_synced_as_themselves(
        make_pane: Callable[..., Pane], serve_app: Callable[..., LiveServer], fake_salesforce: Any,
        fake_google: GoogleFake, tmp_path: Path) -> None:
    key = seed(fake_salesforce, fake_google, tmp_path)
    server = serve_app(**fake_google.settings(), SALESFORCE_JWT_PRIVATE_KEY=JWT_KEYS[0])
    console = console_sign_in(make_pane, server, "ada@acme.example", "ada-pw")
    page = console.page

    open_view(page, "Mailbox access")
    expect(page.locator("#access-google-state")).to_have_text("Not set up yet")
    expect(page.locator("#access-google-scopes")).to_have_text(",".join(DELEGATED_SCOPES))

    # A file that is not a service account key is refused next to the file input; nothing is saved.
    other = tmp_path / "not-a-key.json"
    other.write_text(json.dumps({"type": "authorized_user", "client_id": "1"}))
    page.get_by_label("Service account key (JSON file)").set_input_files(str(other))
    page.get_by_label("Workspace domain").fill(DOMAIN)
    page.get_by_role("button", name="Save the key", exact=True).click()
    expect(page.locator("#access-google-key-error")).to_contain_text("not a service account key")
    expect(page.locator("#access-google-state")).to_have_text("Not set up yet")

    page.get_by_label("Service account key (JSON file)").set_input_files(str(key))
    page.get_by_role("button", name="Save the key", exact=True).click()
    expect(page.locator("#access-google-status")).to_have_text("Saved: Google accepted the key for this domain.")
    expect(page.locator("#access-google-state")).to_have_text(
        "Set up: mailboxes are read through domain-wide delegation")
    expect(page.locator("#access-google-client")).to_have_text(CLIENT_ID)
    expect(page.locator("#access-google-authorise-client")).to_have_text(CLIENT_ID)
    expect(page.locator("#access-google-email")).to_have_text(SA_EMAIL)
    assert "PRIVATE KEY" not in page.content()
    page.get_by_label("Workspace mailbox to test with").fill(address("bob"))
    page.get_by_role("button", name="Test the key", exact=True).click()
    expect(page.locator("#access-google-status")).to_have_text("The connection works. 0 people resumed.")
    found = axe_violations(page, "#access")
    assert found == [], found

    with running_worker(server, tmp_path) as worker:
        start_activation(page, [address(n) for n in NAMES], choose=choose_google)
        seen = wait_for_progress(page, 3, worker)
        assert seen[-1] == "Done: 3 of 3 people", seen
        table = sorted(results_table(page))
        assert [(row[0], row[1]) for row in table] == [(address(n), "Activated") for n in NAMES], table
        sync_now_from_console(page, [n.capitalize() for n in NAMES])
        uids = [user_id_for(ORG, str(fake_salesforce.state.users[address(n)].user_id)) for n in NAMES]
        runs = wait_for_runs(server, uids, worker)
    assert all(run["counts"]["written"] == 1 for run in runs.values()), runs
    assert_created_by(fake_salesforce, {f"Quote for {n}": str(fake_salesforce.state.users[address(n)].user_id)
                                        for n in NAMES})
    assert {address(n) for n in NAMES} <= {g["sub"] for g in fake_google.google.delegation.grants}
    console.assert_clean(allowed_statuses=(400, 401))  # the refused key; /api/admin/session before signing in
