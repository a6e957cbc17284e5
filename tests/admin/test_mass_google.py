"""Mass activation through Google Workspace domain-wide delegation: the console, results, runs, the broken org."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.connectors.google.delegation import DELEGATED_SCOPES, SECRET_KEY
from backend.errors import AuthRevoked
from backend.extensions import QUEUE_NOTIFY, services
from backend.jobs.org_notify import send_org_notice
from backend.jobs.sync import enqueue_sync, sync_mailbox
from backend.store.mailboxes import SyncState
from backend.sync.mass import VIA
from sandbox.google_delegation import new_service_account_key
from tests.auth.test_google import connect
from tests.conftest import GoogleFake
from tests.google_mass_env import (
    CLIENT_ID,
    SA_EMAIL,
    activate_google,
    ivan_uses_his_own_gmail,
    mass_config,  # noqa: F401 - the fixture, with the fake Google
    seed_workspace,
    set_up_key,
)
from tests.helpers import run_queued
from tests.mass_env import ADMIN_ADDRESS, DOMAIN, EXPECTED, ORG, MassEnv, address, pane_login

CUSTOMER = "customer@client.example"


@pytest.fixture
def key(fake_google: GoogleFake) -> dict[str, str]:
    """The Workspace seeded; the service account's JSON key as downloaded."""
    return seed_workspace(fake_google)


@pytest.fixture
def gws(mass: MassEnv, fake_google: GoogleFake, key: dict[str, str]) -> MassEnv:
    """The org's service account key saved through the console API; Ivan on his own Gmail."""
    saved = set_up_key(mass, key)
    assert saved.status_code == 200, saved.get_data(as_text=True)
    ivan_uses_his_own_gmail(mass, fake_google)
    return mass


def test_the_console_saves_the_key_but_never_shows_it(gws: MassEnv, key: dict[str, str],
                                                      fake_google: GoogleFake) -> None:
    view = gws.client.get("/api/admin/connections/google").json
    assert view["client_email"] == SA_EMAIL and view["client_id"] == CLIENT_ID and view["domain"] == DOMAIN
    assert view["key_saved"] and view["state"] == "ok" and view["scopes"] == list(DELEGATED_SCOPES)
    assert "PRIVATE KEY" not in json.dumps(view) and key["private_key_id"] not in json.dumps(view)
    store = services().store
    raw = store.redis.hgetall(store.keys("orgaccess", ORG))
    assert "PRIVATE KEY" not in str(raw)
    assert all("PRIVATE KEY" not in str(store.redis.get(k)) for k in store.redis.keys("*secret*"))
    assert json.loads(store.org_access.get_secret(ORG, SECRET_KEY) or "{}")["client_id"] == CLIENT_ID
    # Proved with a delegated token as the admin before it was saved.
    assert [g["sub"] for g in fake_google.google.delegation.grants] == ["alice@acme.example"]


@pytest.mark.parametrize("form", ["key", "service_account"])
def test_the_key_file_text_or_the_parsed_key_is_accepted(mass: MassEnv, key: dict[str, str], form: str) -> None:
    value: Any = json.dumps(key) if form == "key" else key
    answer = mass.client.put("/api/admin/connections/google", headers={"X-CSRF-Token": mass.csrf},
                             json={form: value, "domain": f"{DOMAIN.upper()}, other.example"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["domains"] == [DOMAIN, "other.example"] and answer.json["address"] == "alice@acme.example"
    assert services().store.org_access.get(ORG).google_domains == (DOMAIN, "other.example")


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"key": "{not json"}, 400, "invalid_input"),
    ({"key": json.dumps({"type": "authorized_user"})}, 400, "invalid_input"),
    ({"domain": "not a domain"}, 400, "invalid_input"),
    ({"address": f"nobody@{DOMAIN}"}, 422, "mailbox_not_found"),
    ({"address": "someone@elsewhere.example"}, 400, "invalid_input"),
    ({"unknown": 1}, 400, "invalid_input"),
])
def test_a_bad_key_or_domain_is_not_saved(mass: MassEnv, key: dict[str, str], change: dict[str, Any], status: int,
                                          code: str) -> None:
    body = {"key": json.dumps(key), "domain": DOMAIN, **change}
    answer = mass.client.put("/api/admin/connections/google", headers={"X-CSRF-Token": mass.csrf}, json=body)
    assert (answer.status_code, answer.json["error"]["code"]) == (status, code), answer.get_data(as_text=True)
    assert not services().store.org_access.get(ORG).google_client_id
    assert not services().store.org_access.has_secret(ORG, SECRET_KEY)


@pytest.mark.parametrize(("breakage", "code"), [
    ("revoke", "key_refused"), ("unauthorise", "delegation_not_authorised")])
def test_googles_refusal_is_the_setup_error(mass: MassEnv, key: dict[str, str], fake_google: GoogleFake,
                                            breakage: str, code: str) -> None:
    if breakage == "revoke":
        fake_google.google.revoke_key(SA_EMAIL)
    else:
        fake_google.google.authorise_delegation(CLIENT_ID, [])
    answer = set_up_key(mass, key)
    assert (answer.status_code, answer.json["error"]["code"]) == (422, code), answer.get_data(as_text=True)
    if code == "delegation_not_authorised":
        assert CLIENT_ID in answer.json["error"]["message"]
    assert not services().store.org_access.get(ORG).google_client_id


@pytest.mark.parametrize(("name", "check", "code"), [
    ("bob", "ok", None), ("gina", "refused", "gmail_disabled"), ("erin", "refused", "mailbox_not_found"),
    ("frank", "refused", "mailbox_mismatch")])
def test_the_test_button_checks_one_mailbox(gws: MassEnv, name: str, check: str, code: str | None) -> None:
    answer = gws.post("/api/admin/connections/google/check", json={"address": address(name)})
    assert answer.status_code == 200 and answer.json["check"] == check and answer.json["check_code"] == code


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_person_gets_their_result(gws: MassEnv, name: str) -> None:
    (row,) = activate_google(gws, [name])["results"]
    assert row["result"] == EXPECTED[name], row
    mailbox = services().store.mailboxes.get(gws.uid(name)) if name != "carol" else None
    if EXPECTED[name] == "activated":
        assert mailbox is not None and mailbox.state is SyncState.RUNNING and mailbox.provider == "google"
        assert mailbox.connection["delegated"] and mailbox.connection["client_id"] == CLIENT_ID
        assert mailbox.connection["via"] == VIA and mailbox.address == address(name)
    elif name == "ivan":
        assert mailbox is not None and mailbox.connection == {"via": "consent", "scopes": sorted(DELEGATED_SCOPES)}
    else:
        assert mailbox is None or mailbox.state is SyncState.NOT_ACTIVATED


def test_running_it_twice_changes_nothing(gws: MassEnv) -> None:
    names = sorted(EXPECTED)
    first = {r["address"]: r["result"] for r in activate_google(gws, names)["results"]}
    store = services().store
    before = {n: store.mailboxes.get(gws.uid(n)) for n in names if n != "carol"}
    second = {r["address"]: r["result"] for r in activate_google(gws, names)["results"]}
    assert second == {a: ("already_active" if r == "activated" else r) for a, r in first.items()}
    assert {n: store.mailboxes.get(gws.uid(n)) for n in names if n != "carol"} == before


def test_the_users_list_says_a_delegated_mailbox_is_read_with_the_orgs_key(gws: MassEnv) -> None:
    activate_google(gws, ["bob"])
    rows = gws.client.get("/api/admin/users", query_string={"q": "bob"}).json["users"]
    assert [(r["id"], r["access_type"]) for r in rows] == [(gws.uid("bob"), "domain_wide")], rows


def _mail(google: GoogleFake, name: str, subject: str) -> None:
    google.gmail.add_message(address(name), ["INBOX", "UNREAD"], subject=subject, sender=CUSTOMER,
                             to=[address(name)])


def test_a_worker_syncs_the_delegated_mailbox_and_writes_as_the_person(gws: MassEnv, fake_google: GoogleFake) -> None:
    gws.sf.state.rest.add_contact(CUSTOMER)
    activate_google(gws, ["bob", "jill"])
    for name in ("bob", "jill"):
        _mail(fake_google, name, f"Quote for {name}")
        assert enqueue_sync(gws.uid(name))
    run_queued()  # a real RQ worker (burst), the job as production runs it
    messages = gws.sf.state.rest.all("EmailMessage")
    assert {m["Subject"]: m["CreatedById"] for m in messages} == {
        "Quote for bob": gws.sf_id("bob"), "Quote for jill": gws.sf_id("jill")}
    subjects = {g["sub"] for g in fake_google.google.delegation.grants}
    assert {address("bob"), address("jill")} <= subjects
    assert not any(g == "refresh_token" for g in fake_google.google.token_requests)  # no personal tokens used


def test_a_revoked_key_breaks_the_org_once_and_everyone_resumes_after_the_fix(gws: MassEnv,
                                                                             fake_google: GoogleFake) -> None:
    store = services().store
    gws.sf.state.rest.add_contact(CUSTOMER)
    activate_google(gws, ["bob", "jill"])
    for name in ("bob", "jill"):
        _mail(fake_google, name, f"Hello {name}")
        assert sync_mailbox(gws.uid(name))["counts"]["written"] == 1
    cursors = {name: store.mailboxes.cursors(gws.uid(name)) for name in ("bob", "jill")}

    fake_google.google.revoke_key(SA_EMAIL)
    with pytest.raises(AuthRevoked):
        sync_mailbox(gws.uid("bob"))
    access = store.org_access.get(ORG)
    assert access.is_broken("google")
    for name in ("bob", "jill"):
        mailbox = store.mailboxes.get(gws.uid(name))
        assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR
        assert mailbox.error is not None and mailbox.error["code"] == "org_connection"
        assert mailbox.error["message"] == "Disabled due to an error (organisation connection)"
        assert mailbox.auth_failures == 0
    ivan = store.mailboxes.get(gws.uid("ivan"))
    assert ivan is not None and ivan.state is SyncState.RUNNING  # his own Gmail is not the org's access
    queue = services().queue(QUEUE_NOTIFY)
    assert queue.job_ids == [f"orgnotify-{ORG}-{access.broken['google']['incident']}"]
    job = queue.fetch_job(queue.job_ids[0])
    assert job is not None and send_org_notice(*job.args)
    (sent,) = gws.sink.messages
    assert sent.rcpt_tos == [ADMIN_ADDRESS] and "Google Workspace" in sent.message["Subject"]
    text = sent.message.get_content()
    assert SA_EMAIL in text and CLIENT_ID in text and "Microsoft 365" not in text and "PRIVATE" not in text

    still = gws.post("/api/admin/connections/google/check", json={"address": address("bob")}).json
    assert still["check"] == "refused" and still["check_code"] == "key_refused" and still["state"] == "broken"
    assert still["resumed"] == 0
    # The admin creates a new key of the same service account and uploads it.
    fresh = new_service_account_key(fake_google.google.delegation, SA_EMAIL, CLIENT_ID)
    saved = set_up_key(gws, fresh)
    assert saved.status_code == 200, saved.get_data(as_text=True)
    fixed = gws.post("/api/admin/connections/google/check", json={"address": address("bob")}).json
    assert fixed["check"] == "ok" and fixed["resumed"] == 2 and fixed["state"] == "ok"
    for name in ("bob", "jill"):
        assert store.mailboxes.get(gws.uid(name)).state is SyncState.RUNNING  # type: ignore[union-attr]
        assert store.mailboxes.cursors(gws.uid(name)) == cursors[name]
    _mail(fake_google, "jill", "After the fix")
    record = sync_mailbox(gws.uid("jill"))
    assert record["counts"]["written"] == 1 and record["counts"]["duplicates"] == 0, record
    assert len(gws.sink.messages) == 1


def test_a_withdrawn_delegation_breaks_the_org_too(gws: MassEnv, fake_google: GoogleFake) -> None:
    activate_google(gws, ["bob"])
    fake_google.google.authorise_delegation(CLIENT_ID, [])
    with pytest.raises(AuthRevoked):
        sync_mailbox(gws.uid("bob"))
    broken = services().store.org_access.get(ORG).broken["google"]
    assert CLIENT_ID in broken["message"] and "Domain-wide delegation" in broken["message"]


def test_one_person_leaving_the_workspace_is_not_the_orgs_breakage(gws: MassEnv, fake_google: GoogleFake) -> None:
    activate_google(gws, ["bob"])
    del fake_google.google.users[address("bob")]
    with pytest.raises(AuthRevoked):
        sync_mailbox(gws.uid("bob"))
    store = services().store
    assert not store.org_access.get(ORG).is_broken("google")
    mailbox = store.mailboxes.get(gws.uid("bob"))
    assert mailbox is not None and mailbox.auth_failures == 1  # counted as his own


def test_their_own_gmail_consent_takes_over_without_a_duplicate(gws: MassEnv, fake_google: GoogleFake,
                                                                ca: Any) -> None:
    store = services().store
    gws.sf.state.rest.add_contact(CUSTOMER)
    activate_google(gws, ["bob"])
    _mail(fake_google, "bob", "Quote")
    assert sync_mailbox(gws.uid("bob"))["counts"]["written"] == 1
    users_before = sorted(store.users.org_user_ids(ORG))

    bob = pane_login(gws, ca, "bob")
    pane = gws.app.test_client()
    status, payload = connect(pane, ca, bob, username=address("bob"))
    assert status == 200 and payload["status"] == "ok", payload

    mailbox = store.mailboxes.get(gws.uid("bob"))
    assert mailbox is not None and mailbox.state is SyncState.RUNNING and mailbox.provider == "google"
    assert mailbox.connection.get("via") != VIA and not mailbox.connection.get("delegated"), mailbox.connection
    assert sorted(store.users.org_user_ids(ORG)) == users_before
    rows = gws.client.get("/api/admin/users", query_string={"q": "bob"}).json["users"]
    assert [(r["id"], r["access_type"]) for r in rows] == [(gws.uid("bob"), "delegated")], rows

    grants = len(fake_google.google.delegation.grants)
    _mail(fake_google, "bob", "Order")
    for _ in range(2):
        record = sync_mailbox(gws.uid("bob"))
        assert record["status"] == "ok", record
    messages = gws.sf.state.rest.all("EmailMessage")
    assert sorted(m["Subject"] for m in messages) == ["Order", "Quote"]
    assert {m["CreatedById"] for m in messages} == {gws.sf_id("bob")}
    assert len(fake_google.google.delegation.grants) == grants  # read with his own token now


def test_google_is_asked_three_times_a_person(gws: MassEnv, fake_google: GoogleFake) -> None:
    recorder = fake_google.server.recorder
    before = len(recorder.calls)
    assert [r["result"] for r in activate_google(gws, ["bob", "jill", "erin"])["results"]] == [
        "activated", "activated", "no_mailbox"]
    paths = [c.path for c in recorder.calls[before:]]
    # bob and jill: a delegated token, the profile, the send-as list; erin: the token request Google refuses.
    assert paths.count("/token") == 3
    assert paths.count("/gmail/v1/users/me/profile") == 2 and paths.count("/gmail/v1/users/me/settings/sendAs") == 2
    assert len(paths) == 7, paths


def test_disconnecting_forgets_the_key_and_stops_everyone_read_with_it(gws: MassEnv) -> None:
    activate_google(gws, ["bob", "jill"])
    answer = gws.client.delete("/api/admin/connections/google", headers={"X-CSRF-Token": gws.csrf})
    assert answer.status_code == 200 and answer.json["deactivated"] == 2, answer.get_data(as_text=True)
    store = services().store
    assert store.org_access.get_secret(ORG, SECRET_KEY) is None
    view = gws.client.get("/api/admin/connections/google").json
    assert not view["connected"] and not view["key_saved"] and view["domains"] == []
    assert all(store.mailboxes.get(gws.uid(n)).state is SyncState.DEACTIVATED  # type: ignore[union-attr]
               for n in ("bob", "jill"))
    ivan = store.mailboxes.get(gws.uid("ivan"))  # his own Gmail consent, not the org's key
    assert ivan is not None and ivan.state is SyncState.RUNNING
