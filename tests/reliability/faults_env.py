"""Shared pieces of the process-level fault suite: seeding a mailbox, the rescue after a crash, and the
one verdict every fault test ends with (each mail item and each meeting in the fake Salesforce exactly once).

The sync environments are tests/jobs' (``env_factory``: real ``rq worker`` processes, the real
connectors against the wire-level fakes), parametrised over every mailbox harness.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rq.registry import StartedJobRegistry

from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from sandbox.redis_server import PrivateRedis
from tests.e2e import SyncEnv, wait_until
from tests.jobs.conftest import env_factory, smtp_sink  # noqa: F401 - fixtures for the fault tests

CONTACTS = ("carol@customer.example", "dave@customer.example", "erin@prospect.example")


def seed_people(env: SyncEnv) -> dict[str, str]:
    """Two contacts and a lead in the fake org; address -> record id."""
    return {
        CONTACTS[0]: env.sf.add_contact(CONTACTS[0], "Carol"),
        CONTACTS[1]: env.sf.add_contact(CONTACTS[1], "Dave"),
        CONTACTS[2]: env.sf.add_lead(CONTACTS[2], "Erin"),
    }


def seed_mail(env: SyncEnv, count: int, prefix: str, start: int = 0) -> dict[str, str]:
    """``count`` incoming emails from the seeded people; Message-ID -> sender."""
    seeded = {}
    when = datetime.now(tz=UTC) - timedelta(hours=2)
    for i in range(start, start + count):
        sender = CONTACTS[i % len(CONTACTS)]
        message_id = f"<{prefix}-{i}@customer.example>"
        env.harness.add_email("inbox", subject=f"{prefix} subject {i}", sender=sender, to=[env.harness.address],
                              body=f"{prefix} body {i}", message_id=message_id, when=when + timedelta(seconds=i))
        seeded[message_id] = sender
    return seeded


def seed_events(env: SyncEnv, count: int, prefix: str) -> dict[str, str]:
    """``count`` meetings the user organised with a contact in the coming days; uid -> subject."""
    seeded = {}
    start = datetime.now(tz=UTC).replace(microsecond=0, second=0) + timedelta(days=1)
    for i in range(count):
        uid, subject = f"UID-{prefix}-{i}", f"{prefix} meeting {i}"
        begins = start + timedelta(hours=2 * i)
        env.harness.add_event(subject=subject, start=begins, end=begins + timedelta(hours=1),
                              organizer=env.harness.address, attendees=[CONTACTS[i % 2]], uid=uid)
        seeded[uid] = subject
    return seeded


def assert_logged_once(env: SyncEnv, mail: dict[str, str], events: dict[str, str] | None = None) -> None:
    """Every seeded email and meeting is in the fake Salesforce exactly once, with no relation twice."""
    emails = Counter(m["MessageIdentifier"] for m in env.sf.all("EmailMessage"))
    assert emails == Counter(mail.keys()), {k: n for k, n in emails.items() if n != 1} or "missing emails"
    ids = {m["Id"]: m["MessageIdentifier"] for m in env.sf.all("EmailMessage")}
    relations = Counter((ids[r["EmailMessageId"]], r["RelationId"], r["RelationType"])
                        for r in env.sf.all("EmailMessageRelation"))
    assert all(n == 1 for n in relations.values()), [k for k, n in relations.items() if n > 1]
    senders = {k for k, _, t in relations if t == "FromAddress"}
    assert senders == set(mail), "an email without its sender relation"
    logged = env.sf.all("Event")
    subjects = Counter(e["Subject"] for e in logged)
    assert subjects == Counter((events or {}).values()), subjects
    keys = Counter(e.get("Sidebar_Sync_Key__c") for e in logged)
    assert all(k and n == 1 for k, n in keys.items()), keys
    assert env.sf.all("Task") == []  # Enhanced Email is on: no email went out as a Task as well


def rescue_abandoned(env: SyncEnv, fake_salesforce: Any) -> None:
    """What happens after a worker died mid-run, before a new worker takes over.

    The killed request may still be running inside "Salesforce"; the rerun comes after it, as RQ's
    abandoned-job detection (once the dead worker's job heartbeat has expired) does: the started job
    goes to its failure path and is requeued (``SYNC_RETRY_SECONDS`` of 0: at once, no scheduler).
    """
    wait_until(lambda: not any(fake_salesforce.calls.in_flight.values()), 30, "in-flight requests to end")
    with env.app.app_context():
        for queue in (QUEUE_INTERACTIVE, QUEUE_SYNC):
            registry = StartedJobRegistry(queue, connection=services().redis_raw)
            registry.cleanup(timestamp=time.time() + 600)


def scheduled_at(env: SyncEnv) -> float | None:
    """When the env's mailbox runs next (None: unscheduled)."""
    with env.app.app_context():
        return services().store.schedule.next_of(env.uid)


@pytest.fixture
def restartable_redis() -> Iterator[PrivateRedis]:
    """A private redis-server that keeps its data across a SIGKILL and restart (append-only, fsync always)."""
    server = PrivateRedis(persistent=True)
    yield server
    server.stop()
