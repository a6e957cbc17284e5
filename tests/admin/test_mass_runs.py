"""Mass-activated people's runs: records created as the person, their own login taking over, the org access breaking."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from backend.errors import AuthRevoked
from backend.extensions import QUEUE_NOTIFY, services
from backend.jobs.org_notify import send_org_notice
from backend.jobs.sync import sync_mailbox
from backend.store.mailboxes import SyncState
from sandbox.login import dialog_payload, local_path, login
from tests.mass_env import ADMIN_ADDRESS, ORG, MassEnv, address

JWT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CUSTOMER = "customer@client.example"


@pytest.fixture
def customer(mass: MassEnv) -> str:
    """A Contact the people write with (so their emails are logged)."""
    return str(mass.sf.state.rest.add_contact(CUSTOMER))


def mail(mass: MassEnv, name: str, subject: str) -> None:
    """A message from the customer in ``name``'s inbox."""
    mass.graph.graph.add_message(address(name), subject=subject, sender=CUSTOMER, to=[address(name)])


def test_a_run_reads_app_only_and_writes_as_the_person(mass: MassEnv, customer: str) -> None:
    mass.activate(["bob"])
    mail(mass, "bob", "Quote")
    record = sync_mailbox(mass.uid("bob"))
    assert record["status"] == "ok" and record["counts"]["written"] == 1, record
    (message,) = mass.sf.state.rest.all("EmailMessage")
    assert message["CreatedById"] == mass.sf_id("bob")
    graph_paths = {c.path for c in mass.graph.graph.recorder.calls if "/users/" in c.path or "/me" in c.path}
    assert not any(p.startswith("/v1.0/me") for p in graph_paths)


def test_their_own_login_takes_over_without_a_second_mailbox_or_a_duplicate(mass: MassEnv, customer: str,
                                                                            ca: Any) -> None:
    store = services().store
    mass.activate(["bob"])
    mail(mass, "bob", "Quote")
    assert sync_mailbox(mass.uid("bob"))["counts"]["written"] == 1
    users_before = store.users.org_user_ids(ORG)
    grants = mass.sf.state.token_requests.count(JWT)

    mass.sf.state.users[address("bob")].password = "bob-pw"
    pane = mass.app.test_client()
    session = login(pane, ca.ca_path, mailbox=address("bob"), username=address("bob"), password="bob-pw")
    assert session.uid == mass.uid("bob")  # the same person of ours, not a new one
    mass.sf.state.expire_access_tokens()  # the next run must sign in again: with which credentials?
    refreshes = mass.sf.state.token_requests.count("refresh_token")
    mail(mass, "bob", "Order")
    sync_mailbox(mass.uid("bob"))  # the catch-up run reads both; the first is already in Salesforce
    sync_mailbox(mass.uid("bob"))

    assert store.users.org_user_ids(ORG) == users_before
    mailbox = store.mailboxes.get(mass.uid("bob"))
    assert mailbox is not None and mailbox.state is SyncState.RUNNING and mailbox.connection["app_only"]
    messages = mass.sf.state.rest.all("EmailMessage")
    assert sorted(m["Subject"] for m in messages) == ["Order", "Quote"]
    assert {m["CreatedById"] for m in messages} == {mass.sf_id("bob")}
    # The person's own session now: no further JWT bearer sign-ins.
    assert mass.sf.state.token_requests.count(JWT) == grants
    assert mass.sf.state.token_requests.count("refresh_token") == refreshes + 1
    sync = pane.get("/api/sync", headers={"Authorization": f"Bearer {session.token}"})
    assert sync.status_code == 200 and sync.json["state"] == "running", sync.get_data(as_text=True)


def test_withdrawn_consent_breaks_the_org_once_and_everyone_resumes_after_the_fix(mass: MassEnv,
                                                                                 customer: str) -> None:
    store = services().store
    mass.activate(["bob", "jill"])
    for name in ("bob", "jill"):
        mail(mass, name, f"Hello {name}")
        assert sync_mailbox(mass.uid(name))["counts"]["written"] == 1
    cursors = {name: store.mailboxes.cursors(mass.uid(name)) for name in ("bob", "jill")}
    assert all(cursors.values())

    mass.graph.ms.tenant(mass.tenant).admin_consented = False
    with pytest.raises(AuthRevoked):
        sync_mailbox(mass.uid("bob"))
    access = store.org_access.get(ORG)
    assert access.is_broken("microsoft")
    for name in ("bob", "jill"):
        mailbox = store.mailboxes.get(mass.uid(name))
        assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR
        assert mailbox.error is not None and mailbox.error["code"] == "org_connection"
        assert mailbox.error["message"] == "Disabled due to an error (organisation connection)"
        assert mailbox.auth_failures == 0  # not the person's own failure
    assert sync_mailbox(mass.uid("jill"))["status"] == "skipped"

    queue = services().queue(QUEUE_NOTIFY)
    assert queue.job_ids == [f"orgnotify-{ORG}-{access.broken['microsoft']['incident']}"]
    job = queue.fetch_job(queue.job_ids[0])
    assert job is not None and send_org_notice(*job.args)
    (sent,) = mass.sink.messages
    assert sent.rcpt_tos == [ADMIN_ADDRESS] and "organisation" in sent.message["Subject"]
    view = mass.client.get("/api/admin/connections/microsoft").json
    assert view["state"] == "broken" and view["error"]["code"] == "org_connection"

    still = mass.post("/api/admin/connections/microsoft/check").json
    assert still["check"] == "refused" and still["resumed"] == 0
    mass.graph.ms.tenant(mass.tenant).admin_consented = True
    fixed = mass.post("/api/admin/connections/microsoft/check").json
    assert fixed["check"] == "ok" and fixed["resumed"] == 2 and fixed["state"] == "ok"
    for name in ("bob", "jill"):
        assert store.mailboxes.get(mass.uid(name)).state is SyncState.RUNNING  # type: ignore[union-attr]
        assert store.mailboxes.cursors(mass.uid(name)) == cursors[name]
    mail(mass, "jill", "After the fix")
    record = sync_mailbox(mass.uid("jill"))
    assert record["counts"]["written"] == 1 and record["counts"]["duplicates"] == 0, record
    assert len(mass.sink.messages) == 1


def test_one_mailbox_taken_out_of_scope_is_not_the_orgs_breakage(mass: MassEnv, customer: str) -> None:
    store = services().store
    mass.activate(["bob", "jill"])
    scope = mass.graph.ms.tenant(mass.tenant).app_access_scope or frozenset()
    mass.graph.ms.tenant(mass.tenant).app_access_scope = scope - {address("bob")}
    with pytest.raises(AuthRevoked):
        sync_mailbox(mass.uid("bob"))
    assert not store.org_access.get(ORG).is_broken("microsoft")
    assert store.mailboxes.get(mass.uid("bob")).auth_failures == 1  # type: ignore[union-attr]
    assert store.mailboxes.get(mass.uid("jill")).state is SyncState.RUNNING  # type: ignore[union-attr]
    assert services().queue(QUEUE_NOTIFY).job_ids == []


def console_consent(mass: MassEnv, tenant_param: str = "") -> Any:
    """Admin consent started from the console: the administrator's sign-in, then Entra's consent; our last answer."""
    mass.graph.ms.auto_user = mass.graph.user.mail
    mass.graph.ms.authorize_mode = "approve"
    url = mass.post("/api/admin/connections/microsoft/consent").json["url"]
    answer = mass.client.get(local_path(url) + tenant_param)
    for _ in range(2):  # Microsoft's sign-in, back to us; Entra's consent, back to us (unless we refused)
        if answer.status_code != 302:
            break
        hop = requests.get(answer.headers["Location"], allow_redirects=False, verify=mass.graph.ca_path, timeout=10)
        answer = mass.client.get(local_path(hop.headers["Location"]))
    return answer


def test_consent_granted_from_the_console_binds_the_tenant_to_the_org(mass: MassEnv) -> None:
    store = services().store
    store.redis.delete(store.keys("orgaccess", ORG), store.keys("mstenant-org", mass.tenant))
    done = console_consent(mass)
    assert done.status_code == 200, done.get_data(as_text=True)
    assert store.org_access.get(ORG).microsoft_tenant == mass.tenant


def test_a_forged_consent_answer_cannot_bind_another_orgs_tenant(mass: MassEnv) -> None:
    # The admin copies the state of a consent they started and writes the answer themselves, naming
    # a tenant that consented for its own org (found in review: that tenant's mail was theirs to read).
    store = services().store
    store.redis.delete(store.keys("orgaccess", ORG), store.keys("mstenant-org", mass.tenant))
    url = mass.post("/api/admin/connections/microsoft/consent").json["url"]
    start = mass.client.get(local_path(url))
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    forged = {"state": state, "admin_consent": "True", "tenant": mass.tenant}
    done = mass.client.get(f"/auth/microsoft/admin-consent/callback?{urlencode(forged)}")
    assert dialog_payload(done.get_data(as_text=True))["error"]["code"] == "state_invalid"
    assert not store.org_access.get(ORG).microsoft_tenant
    refused = mass.post("/api/admin/activate", json={"provider": "microsoft", "users": [address("bob")]})
    assert refused.json is not None and refused.json["error"]["code"] == "org_access_missing"


def test_a_tenant_connected_to_another_org_is_refused(mass: MassEnv) -> None:
    store = services().store
    store.redis.delete(store.keys("orgaccess", ORG))
    store.redis.set(store.keys("mstenant-org", mass.tenant), "00DOTHERORG0000")
    done = console_consent(mass)
    assert dialog_payload(done.get_data(as_text=True))["error"]["code"] == "tenant_taken"
    assert not store.org_access.get(ORG).microsoft_tenant
