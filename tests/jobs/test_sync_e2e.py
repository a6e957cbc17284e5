"""Sync end to end: real Redis, a real ``rq worker`` process, a real mailbox connector and its fake,
the real Salesforce connector and its fake, an SMTP sink. Call counts come from the fakes' records.

Parametrised over every mailbox harness in :data:`sandbox.harness.HARNESSES`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from backend.extensions import services
from backend.store.mailboxes import SyncState
from sandbox.smtp import SmtpSink
from tests.e2e import SyncEnv, renewed_secrets, wait_until
from tests.sfhelpers import redis_text

pytestmark = pytest.mark.slow

CONTACTS = ("carol@customer.example", "dave@customer.example", "erin@prospect.example")


def seed_people(env: SyncEnv) -> dict[str, str]:
    """Two contacts and a lead in the fake org."""
    return {
        CONTACTS[0]: env.sf.add_contact(CONTACTS[0], "Carol"),
        CONTACTS[1]: env.sf.add_contact(CONTACTS[1], "Dave"),
        CONTACTS[2]: env.sf.add_lead(CONTACTS[2], "Erin"),
    }


def seed_mail(env: SyncEnv, count: int, prefix: str = "e2e", start: int = 0) -> dict[str, str]:
    """``count`` incoming emails from the seeded people; returns Message-ID -> sender."""
    seeded = {}
    when = datetime.now(tz=UTC) - timedelta(hours=2)
    for i in range(start, start + count):
        sender = CONTACTS[i % len(CONTACTS)]
        message_id = f"<{prefix}-{i}@customer.example>"
        env.harness.add_email("inbox", subject=f"{prefix} subject {i}", sender=sender, to=[env.harness.address],
                              body=f"{prefix} confidential body {i}", message_id=message_id,
                              when=when + timedelta(seconds=i))
        seeded[message_id] = sender
    return seeded


def relations(env: SyncEnv) -> Counter[tuple[str, str, str]]:
    """(message id, relation id, type) of every EmailMessageRelation, counted."""
    ids = {m["Id"]: m["MessageIdentifier"] for m in env.sf.all("EmailMessage")}
    return Counter((ids[r["EmailMessageId"]], r["RelationId"], r["RelationType"])
                   for r in env.sf.all("EmailMessageRelation"))


def test_backfill_quiet_run_and_one_new_email(env_factory: Callable[..., SyncEnv], redis_url: str) -> None:
    env = env_factory()
    people = seed_people(env)
    env.log_in()
    # The pane's /api/me asked Salesforce whether Alice is an admin (one query): not the run's calls.
    env.sf.reset_calls()
    owner = env.mailbox().user_id
    seeded = seed_mail(env, 12)
    # Not logged: a stranger (no match) and a colleague (internal).
    env.harness.add_email("inbox", subject="stranger subject", sender="nobody@unknown.example",
                          to=[env.harness.address], body="stranger body", message_id="<stranger@x>")
    colleague = "boss@" + env.harness.address.rpartition("@")[2]
    env.harness.add_email("inbox", subject="colleague subject", sender=colleague,
                          to=[env.harness.address], body="colleague body", message_id="<colleague@x>")
    env.activate()
    env.worker()
    first = env.wait_runs(1)
    assert first["status"] == "ok", first
    assert first["trigger"] == "interactive"
    counts = first["counts"]
    assert counts["written"] == 12 and counts["emails_written"] == 12
    assert counts["duplicates"] == 0 and counts["quarantined"] == 0
    assert counts["filtered_by"].get("no_match") == 1
    assert counts["read"] == counts["written"] + counts["filtered"]

    messages = env.sf.all("EmailMessage")
    assert sorted(m["MessageIdentifier"] for m in messages) == sorted(seeded)
    sf_owner = None
    with env.app.app_context():
        user = services().store.users.get(owner)
        assert user is not None
        sf_owner = user.sf_user_id
    expected: Counter[tuple[str, str, str]] = Counter()
    for message_id, sender in seeded.items():
        expected[(message_id, people[sender], "FromAddress")] += 1
        expected[(message_id, sf_owner, "ToAddress")] += 1
    assert relations(env) == expected
    # Exactly: describe once for the org, one lookup (people + dedup), one write.
    assert [c.kind for c in env.sf.calls] == ["composite", "composite", "composite"]
    assert len(env.sf.write_calls) == 1
    assert first["salesforce_calls"] == 3

    # Nothing new: not a single Salesforce call.
    env.sf.reset_calls()
    assert env.run_now()
    quiet = env.wait_runs(2)
    assert quiet["status"] == "ok" and quiet["counts"]["read"] == 0
    assert quiet["salesforce_calls"] == 0 and env.sf.calls == []

    # One new email: exactly one write call (and one lookup).
    seed_mail(env, 1, start=100)
    assert env.run_now()
    third = env.wait_runs(3)
    assert third["counts"]["written"] == 1
    assert len(env.sf.write_calls) == 1 and len(env.sf.calls) == 2
    assert third["salesforce_calls"] == 2
    assert len(env.sf.all("EmailMessage")) == 13

    # Mail content never reached Redis (run records, quarantine, job hashes, results included).
    text = redis_text(redis.Redis.from_url(redis_url, decode_responses=True, encoding_errors="replace"))
    for i in [*range(12), 100]:
        assert f"e2e subject {i}" not in text and f"e2e confidential body {i}" not in text
    for leftover in ("stranger subject", "stranger body", "colleague subject", "colleague body"):
        assert leftover not in text
    mailbox = env.mailbox()
    assert mailbox.state is SyncState.RUNNING and mailbox.last_run == third


def test_same_email_in_two_mailboxes_is_logged_once(env_factory: Callable[..., SyncEnv],
                                                    fake_salesforce: Any) -> None:
    first = env_factory()
    seed_people(first)
    first.log_in()
    seed_mail(first, 3, prefix="shared")
    first.activate()
    worker = first.worker("alice")
    assert first.wait_runs(1)["counts"]["written"] == 3
    worker.stop()

    # A colleague with the same emails in their own mailbox (another server, another Salesforce user).
    fake_salesforce.state.add_user("bob@acme.example", "bob-pw", email="bob@acme.example", name="Bob")
    second = env_factory()
    second.log_in(username="bob@acme.example", password="bob-pw")
    seed_mail(second, 3, prefix="shared")
    second.sf.reset_calls()
    second.activate()
    second.worker("bob")
    record = second.wait_runs(1)
    assert record["counts"]["written"] == 0 and record["counts"]["duplicates"] == 3
    assert len(second.sf.all("EmailMessage")) == 3
    # One lookup (capabilities are cached for the org), no write.
    assert len(second.sf.calls) == 1 and second.sf.write_calls == []


def test_auth_failures_disable_sync_email_once_and_reconnect_resumes(
        env_factory: Callable[..., SyncEnv], smtp_sink: SmtpSink) -> None:
    env = env_factory()
    seed_people(env)
    env.log_in()
    seed_mail(env, 4, prefix="before")
    env.activate()
    worker = env.worker()
    assert env.wait_runs(1)["counts"]["written"] == 4
    cursors_before = env.mailbox()
    assert cursors_before.state is SyncState.RUNNING

    env.harness.revoke_credentials()
    with env.app.app_context():
        max_failures = services().settings.MAX_AUTH_FAILURES
    for attempt in range(1, max_failures + 1):
        assert env.run_now()
        record = env.wait_runs(1 + attempt)
        assert record["status"] == "error" and record["error"]["code"] == "mailbox_auth_failed"
        mailbox = env.mailbox()
        assert mailbox.auth_failures == attempt
        expected = SyncState.DISABLED_ERROR if attempt == max_failures else SyncState.RUNNING
        assert mailbox.state is expected
    messages = smtp_sink.wait_for(1)
    # More attempts after the incident: no run, no second email.
    env.run_now()
    time.sleep(2)
    assert len(env.runs()) == 1 + max_failures
    assert len(smtp_sink.messages) == 1
    (captured,) = messages
    body = captured.message.get_content()
    assert captured.rcpt_tos == ["alice@acme.example"]
    assert captured.message["Subject"] == "Sidebar Sync stopped logging your email in Salesforce"
    assert "https://localhost:3000/taskpane.html#sync-settings" in body
    assert "Reconnect" in body and env.harness.address in body
    password = renewed_secrets(env.harness)
    assert not any(secret in body for secret in password.values())
    assert "before subject" not in body
    disabled = env.mailbox()
    assert disabled.error is not None and disabled.error["code"] == "mailbox_auth_failed"

    # While disabled, one more email arrives; reconnecting resumes from the saved cursors.
    seed_mail(env, 1, prefix="after")
    env.sf.reset_calls()
    env.activate(secrets=password)
    record = env.wait_runs(2 + max_failures)
    assert record["status"] == "ok"
    assert record["counts"]["read"] == 1 and record["counts"]["written"] == 1, record  # not a re-read of the backfill
    assert len(env.sf.write_calls) == 1
    assert sorted(m["MessageIdentifier"] for m in env.sf.all("EmailMessage")) == sorted(
        [f"<before-{i}@customer.example>" for i in range(4)] + ["<after-0@customer.example>"])
    mailbox = env.mailbox()
    assert mailbox.state is SyncState.RUNNING and mailbox.auth_failures == 0 and mailbox.error is None
    assert len(smtp_sink.messages) == 1
    worker.stop()


def test_pane_actions_over_http_with_the_worker(env_factory: Callable[..., SyncEnv]) -> None:
    env = env_factory()
    seed_people(env)
    session = env.log_in()
    seed_mail(env, 2, prefix="http")
    env.activate()
    env.worker()
    env.wait_runs(1)
    headers = session.headers
    view = env.client.get("/api/sync", headers=headers).json
    assert view["state"] == "running" and view["last_run"]["counts"]["written"] == 2 and view["job"] is None
    assert view["next_run"] is not None

    assert env.client.post("/api/sync/pause", headers=headers).json["state"] == "paused"
    seed_mail(env, 1, prefix="http", start=10)
    assert env.run_now()  # a run that finds the mailbox paused does nothing
    wait_until(lambda: env.client.get("/api/sync", headers=headers).json["job"] is None, 30, "paused run")
    assert len(env.runs()) == 1 and len(env.sf.all("EmailMessage")) == 2

    resumed = env.client.post("/api/sync/resume", headers=headers)
    assert resumed.status_code == 200 and resumed.json["state"] == "running"
    assert env.wait_runs(2)["counts"]["written"] == 1

    now = env.client.post("/api/sync/run", headers=headers)
    assert now.status_code == 202 and now.json["queued"] is True
    last = env.wait_runs(3)
    assert last["counts"]["read"] == 0
    view = env.client.get("/api/sync", headers=headers).json
    assert [r["id"] for r in view["recent_runs"]] == [r["id"] for r in env.runs()[:3]]
    assert view["last_run"]["id"] == last["id"]

    gone = env.client.post("/api/sync/deactivate", headers=headers)
    assert gone.status_code == 200 and gone.json["state"] == "deactivated"
    with env.app.app_context():
        assert services().store.mailboxes.cursors(env.uid) == {}
        assert services().store.secrets.get("mailbox", env.uid, next(iter(env.harness.secrets()))) is None
