"""What sync did with the item in front of the person: ``/api/items/status`` after real runs, Log it now
and Never log this sender, for every mailbox harness (real connectors, their fakes, the fake org).

Runs go through RQ's in-process worker; the Redis scan at the end finds no subject, body or
Message-ID in clear after the runs and the look-ups.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from sandbox.salesforce_rest import Rule
from tests.e2e import SyncEnv
from tests.helpers import run_queued
from tests.jobs.conftest import jobs_in_process
from tests.sfhelpers import redis_text

pytestmark = pytest.mark.slow

CAROL = "carol@customer.example"


@pytest.fixture
def env(env_factory: Callable[..., SyncEnv]) -> Iterator[SyncEnv]:
    """Alice logged in, Carol a Contact, sync running (nothing read yet); jobs run in this process."""
    built = env_factory()
    built.log_in()
    built.sf.add_contact(CAROL, "Customer", FirstName="Carol")
    with jobs_in_process(built):
        yield built


def run(env: SyncEnv) -> None:
    """Run what is queued to completion."""
    with env.app.app_context():
        run_queued()


def status(env: SyncEnv, **query: str) -> dict[str, Any]:
    """GET /api/items/status as the pane asks it."""
    assert env.session is not None
    resp = env.client.get("/api/items/status", query_string=query, headers=env.session.headers)
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def seed(env: SyncEnv, message_id: str, sender: str, *, subject: str, sensitivity: str = "normal",
         to: list[str] | None = None) -> str:
    """An email in the inbox two hours ago; returns its server id."""
    return env.harness.add_email("inbox", subject=subject, sender=sender, to=to or [env.harness.address],
                                 body=f"{subject} secret body", message_id=message_id,
                                 when=datetime.now(tz=UTC) - timedelta(hours=2), sensitivity=sensitivity)


def test_each_decision_is_told_and_nothing_is_kept_in_clear(env: SyncEnv, redis_url: str) -> None:
    env.sf.rules.append(Rule("EmailMessage", lambda r: "Refused" in str(r.get("Subject")), "Subject not allowed"))
    seed(env, "<logged@customer.example>", CAROL, subject="Quote for Q3")
    seed(env, "<free@gmail.example>", "someone@gmail.com", subject="Free mail hello")
    seed(env, "<internal@acme.example>", "bob@" + env.harness.address.split("@")[1], subject="Internal lunch")
    seed(env, "<private@customer.example>", CAROL, subject="Private matter", sensitivity="private")
    seed(env, "<nobody@stranger.example>", "x@stranger.example", subject="Stranger mail")
    seed(env, "<refused@customer.example>", CAROL, subject="Refused topic")
    start = datetime.now(tz=UTC) + timedelta(days=1)
    env.harness.add_event(subject="Quarterly review", start=start, end=start + timedelta(hours=1),
                          organizer=env.harness.address, attendees=[CAROL], uid="UID-QUARTERLY-1")
    env.activate()
    run(env)

    logged = status(env, message_id="<logged@customer.example>")
    assert logged["status"] == "logged" and logged["source"] == "trail"
    record = logged["records"][0]
    assert record["object"] == "EmailMessage" and record["id"] in {m["Id"] for m in env.sf.all("EmailMessage")}
    assert record["url"].endswith(f"/lightning/r/EmailMessage/{record['id']}/view")
    assert [p["name"] for p in record["people"]] == ["Carol Customer"]
    assert status(env, message_id="logged@customer.example")["status"] == "logged"  # without angle brackets
    for message_id, reason in [("<free@gmail.example>", "free_mail"), ("<internal@acme.example>", "internal"),
                               ("<private@customer.example>", "private"), ("<nobody@stranger.example>", "no_match"),
                               ("<refused@customer.example>", "refused")]:
        answer = status(env, message_id=message_id)
        assert (answer["status"], answer["reason"]) == ("not_logged", reason), message_id
    assert status(env, message_id="<refused@customer.example>")["salesforce_code"] == \
        "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert status(env, message_id="<private@customer.example>")["can_log_now"] is False
    meeting = status(env, event_uid="UID-QUARTERLY-1")
    assert meeting["status"] == "logged" and meeting["records"][0]["object"] == "Event"
    unseen = status(env, message_id="<later@customer.example>", date=datetime.now(tz=UTC).isoformat())
    assert unseen["status"] == "not_yet" and unseen["next_run"]
    old = status(env, message_id="<old@customer.example>", date=(datetime.now(tz=UTC) - timedelta(days=60)).isoformat())
    assert (old["status"], old["reason"]) == ("not_logged", "too_old")

    text = redis_text(redis.Redis.from_url(redis_url, decode_responses=True, encoding_errors="replace"))
    for leaked in ("Quote for Q3", "secret body", "logged@customer.example", "free@gmail.example",
                   "nobody@stranger.example", "refused@customer.example", "UID-QUARTERLY-1", "Quarterly review",
                   "Carol Customer"):
        assert leaked not in text, leaked


def test_salesforce_answers_when_the_trail_is_silent(env: SyncEnv) -> None:
    env.sf.insert("EmailMessage", MessageIdentifier="<colleague@customer.example>", Subject="Logged elsewhere")
    env.activate()
    run(env)
    answer = status(env, message_id="<colleague@customer.example>")
    assert answer["status"] == "logged" and answer["source"] == "salesforce"


def test_log_it_now_and_never_log_this_sender(env: SyncEnv) -> None:
    item_id = seed(env, "<blocked@customer.example>", CAROL, subject="Blocked by me")
    env.activate()
    assert env.session is not None
    headers = env.session.headers
    assert env.client.put("/api/sync/settings", json={"blocklist": ["customer.example"]},
                          headers=headers).status_code == 200
    run(env)
    assert status(env, message_id="<blocked@customer.example>")["reason"] == "blocked"
    # Paused: Log it now still works, for this one item (the person's own blocklist gives way).
    assert env.client.post("/api/sync/pause", json={}, headers=headers).status_code == 200
    resp = env.client.post("/api/items/log", json={"message_id": "<blocked@customer.example>", "item_id": item_id},
                           headers=headers)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "logged" and resp.get_json()["records"][0]["people"][0]["name"]
    assert "<blocked@customer.example>" in {m["MessageIdentifier"] for m in env.sf.all("EmailMessage")}
    assert env.runs()[0]["trigger"] == "log_now"
    # The id of another item does not log what was named.
    other = seed(env, "<other@customer.example>", CAROL, subject="Other")
    resp = env.client.post("/api/items/log", json={"message_id": "<blocked@customer.example>", "item_id": other},
                           headers=headers)
    assert resp.status_code == 404

    resp = env.client.post("/api/items/block", json={"entry": "friend@gmail.com"}, headers=headers)
    assert resp.status_code == 200
    assert resp.get_json()["sync"]["settings"]["blocklist"] == ["customer.example", "friend@gmail.com"]
    resp = env.client.post("/api/items/block", json={"entry": "not an address"}, headers=headers)
    assert resp.status_code == 400 and resp.get_json()["error"]["field"] == "entry"


def test_the_org_blocklist_holds_for_log_it_now(env: SyncEnv) -> None:
    item_id = seed(env, "<orgblocked@customer.example>", CAROL, subject="Org blocked")
    with env.app.app_context():
        from backend.extensions import services

        user = services().store.users.get(env.uid)
        assert user is not None
        services().store.orgs.update(user.org_id, blocklist=["customer.example"])
    env.activate()
    run(env)
    answer = status(env, message_id="<orgblocked@customer.example>")
    assert (answer["reason"], answer["can_log_now"]) == ("blocked_org", False)
    assert env.session is not None
    resp = env.client.post("/api/items/log", json={"message_id": "<orgblocked@customer.example>",
                                                   "item_id": item_id}, headers=env.session.headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "not_logged"
    assert not env.sf.all("EmailMessage")


def test_private_items_are_never_logged_now(env: SyncEnv) -> None:
    item_id = seed(env, "<private@customer.example>", CAROL, subject="Private", sensitivity="private")
    env.activate()
    run(env)
    assert env.session is not None
    resp = env.client.post("/api/items/log", json={"message_id": "<private@customer.example>", "item_id": item_id},
                           headers=env.session.headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["status"], body["reason"]) == ("not_logged", "private")
    assert not [m for m in env.sf.all("EmailMessage") if m["MessageIdentifier"] == "<private@customer.example>"]


def test_never_log_this_sender_is_refused_when_the_org_locks_the_blocklist(env: SyncEnv) -> None:
    with env.app.app_context():
        from backend.extensions import services

        user = services().store.users.get(env.uid)
        assert user is not None
        services().store.orgs.update(user.org_id, blocklist=["rival.example"], locked=["blocklist"])
    env.activate()
    assert env.session is not None
    resp = env.client.post("/api/items/block", json={"entry": "friend@gmail.com"}, headers=env.session.headers)
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "locked_by_admin"


@pytest.mark.parametrize("env_factory", ["exchange"], indirect=True)
def test_each_occurrence_of_a_series_answers_for_itself(env: SyncEnv) -> None:
    """The pane names an occurrence by Outlook's item id: its own Event answers, from the trail or Salesforce."""
    from sandbox.ews.recurrence import occurrence_id

    state: Any = env.harness.state  # type: ignore[attr-defined]
    first = (datetime.now(tz=UTC) + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    master = state.add_event(env.harness.address, subject="Weekly call", start=first, end=first + timedelta(hours=1),
                             organizer=env.harness.address, attendees=[CAROL], uid="UID-weekly", recurring=True,
                             recurrence_end=(first + timedelta(days=20)).date())
    state.items[master].interval_days = 7
    keys = [f"UID-weekly@{(first + timedelta(days=7 * n)).strftime('%Y%m%dT%H%M%SZ')}" for n in range(3)]
    # The third occurrence is in Salesforce already (a colleague logged it); the trail knows nothing of it.
    held = env.sf.insert("Event", Subject="Weekly call", Sidebar_Sync_Key__c=keys[2])
    env.activate()
    before = status(env, kind="event", item_id=occurrence_id(state.items[master], 3))
    assert (before["status"], before["source"]) == ("logged", "salesforce")
    assert before["records"][0]["id"] == held
    # Log it now on the first occurrence logs that occurrence, under its own key (not the series UID).
    assert env.session is not None
    resp = env.client.post("/api/items/log", json={"kind": "event", "item_id": occurrence_id(state.items[master], 1)},
                           headers=env.session.headers)
    assert resp.status_code == 200 and resp.get_json()["status"] == "logged", resp.get_json()
    assert {str(e["Sidebar_Sync_Key__c"]) for e in env.sf.all("Event")} == {keys[0], keys[2]}
    run(env)
    by_key = {str(e["Sidebar_Sync_Key__c"]): e["Id"] for e in env.sf.all("Event")}
    for index, key in enumerate(keys, start=1):
        answer = status(env, kind="event", item_id=occurrence_id(state.items[master], index))
        assert answer["status"] == "logged" and answer["records"][0]["id"] == by_key[key], key
