"""Expired cursors, per provider: Graph's delta link (410 SyncStateNotFound), an EWS sync state
(ErrorInvalidSyncStateData), a Gmail historyId (404) and a Calendar syncToken (410).

The connector-level behaviour (a resync bounded by the window, each item once) is
``tests/connectors/test_mailbox_protocol.py::test_expired_cursors_resync_within_the_window``; here
the whole run: the resync rereads only the window, writes only what is new, and Salesforce holds
every email and meeting exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backend.extensions import services
from tests.e2e import SyncEnv
from tests.reliability import service_env as shared
from tests.reliability.service_env import (
    CONTACT,
    assert_logged_once,
    run_jobs,
    seed_mail,
    seed_meeting,
)

# The shared fixtures, bound here so pytest finds them for this module's tests.
provider = shared.provider
service_env = shared.service_env
service_env_factory = shared.service_env_factory


def expiry_answers(env: SyncEnv) -> dict[str, int]:
    """How often the fake Google said "that cursor is gone": history 404, Calendar syncToken 410.

    Graph's 410 comes inside a ``$batch`` answer and EWS's ErrorInvalidSyncStateData inside a SOAP
    body, which their recorders do not keep; there the resynced pages are the evidence.
    """
    h: Any = env.harness
    if env.harness.provider == "google":
        calls = h.server.recorder.calls
        return {"history 404": sum(1 for c in calls if "/history" in c.path and c.status == 404),
                "syncToken 410": sum(1 for c in calls if c.path.startswith("/calendar/") and c.status == 410)}
    return {}


def test_an_expired_cursor_is_a_bounded_resync_that_writes_nothing_twice(service_env: SyncEnv) -> None:
    env = service_env
    # Outside the backfill window: never read, neither by the first run nor by the resync.
    env.harness.add_email("inbox", subject="ancient", sender=CONTACT, to=[env.harness.address], body="old",
                          message_id="<ancient@customer.example>", when=datetime.now(UTC) - timedelta(days=40))
    before = seed_mail(env, 5, "before") + seed_mail(env, 2, "sent-before", folder="sent")
    seed_meeting(env, "uid-expiry-1")
    env.activate()
    run_jobs(env)
    first = env.mailbox().last_run
    assert first is not None and first["status"] == "ok", first
    assert_logged_once(env, before, events={"uid-expiry-1"})
    with env.app.app_context():
        old_cursors = services().store.mailboxes.cursors(env.uid)
    assert set(old_cursors) == {"inbox", "sent", "calendar"}

    after = seed_mail(env, 2, "after")
    seed_meeting(env, "uid-expiry-2", days_ahead=3)
    env.harness.expire_cursors()  # every cursor handed out so far is refused from now on
    env.sf.reset_calls()
    assert env.run_now()
    run_jobs(env)

    record = env.mailbox().last_run
    assert record is not None and record["status"] == "ok", record
    assert all(n >= 1 for n in expiry_answers(env).values()), expiry_answers(env)
    counts = record["counts"]
    assert counts["resynced_pages"] >= 3  # each folder started over from the window
    assert counts["emails_written"] == 2 and counts["events_written"] == 1
    assert counts["duplicates"] >= len(before)  # re-read, found in Salesforce, not written again
    # Bounded: the window again (what the first run read, plus what is new), not the whole mailbox.
    assert counts["read"] <= first["counts"]["read"] + 3
    assert_logged_once(env, before + after, events={"uid-expiry-1", "uid-expiry-2"})
    with env.app.app_context():
        new_cursors = services().store.mailboxes.cursors(env.uid)
    assert set(new_cursors) == {"inbox", "sent", "calendar"}
    assert all(new_cursors[f] != old_cursors[f] for f in new_cursors)

    # The new cursors are ordinary ones: a quiet run reads nothing and calls Salesforce not once.
    env.sf.reset_calls()
    assert env.run_now()
    run_jobs(env)
    quiet = env.mailbox().last_run
    assert quiet is not None and quiet["status"] == "ok" and quiet["counts"]["read"] == 0
    assert quiet["counts"]["resynced_pages"] == 0 and env.sf.calls == []
    assert_logged_once(env, before + after, events={"uid-expiry-1", "uid-expiry-2"})
