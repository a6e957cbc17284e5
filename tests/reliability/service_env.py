"""What the service-fault suite shares: one person's sync against a mailbox harness, run in this process.

Each test builds an environment (the app on real Redis, the real mailbox connector against its
wire-level fake from :data:`sandbox.harness.HARNESSES`, the real Salesforce connector against the
fake org), breaks a service, and ends with :func:`assert_logged_once`: every expected email is in
the fake Salesforce exactly once, with no relation twice, and no event twice.

Runs go through the RQ job (``sync_mailbox``) in RQ's in-process ``SimpleWorker``, so the job's
retry policy, timeout and failure handling are the product's own; :func:`retries_due` plays the
scheduler once the waits a service asked for have passed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from backend import create_app
from backend.extensions import QUEUE_INTERACTIVE, QUEUE_SYNC, services
from backend.jobs.context import use_app
from backend.jobs.sync import enqueue_sync, job_id_for
from sandbox.harness import HARNESSES, ExchangeHarness, GmailHarness, GraphHarness, HarnessContext, MailboxHarness
from sandbox.https_client import HttpsClient
from sandbox.tls import CertPair, TestCA
from tests.conftest import RunningFake
from tests.e2e import SyncEnv
from tests.helpers import run_queued

CONTACT = "carol@customer.example"
LEAD = "erin@prospect.example"
PEOPLE = (CONTACT, LEAD)
KEY_FIELD = "Sidebar_Sync_Key__c"


def build_env(app_config: dict[str, Any], provider: str, ca: TestCA, cert: CertPair, fake_salesforce: RunningFake,
              log_dir: Path, harness_kwargs: dict[str, Any] | None = None, **overrides: Any) -> SyncEnv:
    """An environment for one provider: its harness, the app configured for it (callers close both)."""
    harness: MailboxHarness
    if provider == "exchange":
        harness = ExchangeHarness(ca.ca_path, cert, **(harness_kwargs or {}))
    elif harness_kwargs:
        harness = (GraphHarness if provider == "microsoft" else GmailHarness)(cert, ca.ca_path, **harness_kwargs)
    else:
        harness = HARNESSES[provider](HarnessContext(ca, cert))
    config = {
        **app_config,
        **harness.settings_overrides(),
        # Retries a second apart: tests move time forward with retries_due() rather than wait.
        "SYNC_RETRY_SECONDS": "1,1,1",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    app = create_app(config)
    app.test_client_class = HttpsClient
    return SyncEnv(app, app.test_client(), config, harness, fake_salesforce, ca.ca_path, log_dir)


@pytest.fixture(params=list(HARNESSES))
def provider(request: pytest.FixtureRequest) -> str:
    """Each mailbox provider (tests narrow it with ``@pytest.mark.parametrize("provider", [...])``)."""
    return str(request.param)


@pytest.fixture
def service_env_factory(provider: str, app_config: dict[str, Any], ca: TestCA, server_cert: CertPair,
                        fake_salesforce: RunningFake, redis_client: redis.Redis,
                        tmp_path: Path) -> Iterator[Callable[..., SyncEnv]]:
    """Build logged-in, activated environments for ``provider``; the worker's app is the last one built."""
    made: list[SyncEnv] = []

    def build(harness_kwargs: dict[str, Any] | None = None, **overrides: Any) -> SyncEnv:
        env = build_env(app_config, provider, ca, server_cert, fake_salesforce, tmp_path, harness_kwargs,
                        **overrides)
        made.append(env)
        for person in PEOPLE:
            if person == CONTACT:
                env.sf.add_contact(person, "Carol")
            else:
                env.sf.add_lead(person, "Erin")
        env.log_in()
        use_app(env.app)
        return env

    try:
        yield build
    finally:
        use_app(None)
        for env in made:
            env.close()
            env.harness.close()


@pytest.fixture
def service_env(service_env_factory: Callable[..., SyncEnv]) -> SyncEnv:
    """One environment with the default settings (activate it with :meth:`SyncEnv.activate`)."""
    return service_env_factory()


def seed_mail(env: SyncEnv, count: int, prefix: str, start: int = 0, folder: str = "inbox") -> list[str]:
    """``count`` emails between the mailbox and the seeded people; their Message-IDs."""
    ids = []
    when = datetime.now(tz=UTC) - timedelta(hours=3)
    address = env.harness.address
    for i in range(start, start + count):
        person = PEOPLE[i % len(PEOPLE)]
        message_id = f"<{prefix}-{i}@customer.example>"
        sender, to = (address, [person]) if folder == "sent" else (person, [address])
        env.harness.add_email(folder, subject=f"{prefix} {i}", sender=sender, to=to, body=f"{prefix} body {i}",
                              message_id=message_id, when=when + timedelta(seconds=i))
        ids.append(message_id)
    return ids


def seed_meeting(env: SyncEnv, uid: str, days_ahead: int = 2) -> str:
    """A meeting the mailbox organised with the contact; its remote id."""
    start = datetime.now(tz=UTC).replace(microsecond=0) + timedelta(days=days_ahead)
    return env.harness.add_event(subject=f"Meeting {uid}", start=start, end=start + timedelta(hours=1),
                                 organizer=env.harness.address, attendees=[CONTACT], uid=uid)


def logged_keys(env: SyncEnv) -> Counter[str]:
    """Message-IDs of the EmailMessages in the fake org, counted."""
    return Counter(m["MessageIdentifier"] for m in env.sf.all("EmailMessage"))


def assert_logged_once(env: SyncEnv, expected: set[str] | list[str], events: set[str] | None = None) -> None:
    """Nothing lost, nothing duplicated: exactly ``expected`` emails (and ``events`` by key), each once."""
    keys = logged_keys(env)
    twice = {k: n for k, n in keys.items() if n > 1}
    assert not twice, f"duplicated in Salesforce: {twice}"
    assert set(keys) == set(expected), f"missing {set(expected) - set(keys)}, unexpected {set(keys) - set(expected)}"
    relations = Counter((r["EmailMessageId"], r["RelationId"], r["RelationType"])
                        for r in env.sf.all("EmailMessageRelation"))
    assert all(n == 1 for n in relations.values()), relations
    senders = {r["EmailMessageId"] for r in env.sf.all("EmailMessageRelation") if r["RelationType"] == "FromAddress"}
    assert senders == {m["Id"] for m in env.sf.all("EmailMessage")}, "an email lost its sender relation"
    if events is not None:
        event_keys = Counter(e.get(KEY_FIELD) for e in env.sf.all("Event"))
        assert all(n == 1 for n in event_keys.values()), f"duplicated events: {event_keys}"
        assert set(event_keys) == events


def run_jobs(env: SyncEnv) -> None:
    """Run every queued run job in this process (RQ's SimpleWorker), as a worker would."""
    with env.app.app_context():
        run_queued()


def background_run(env: SyncEnv) -> bool:
    """Queue a background run (as the clock does); True when queued."""
    with env.app.app_context():
        return enqueue_sync(env.uid)


def retries_due(mailbox_id: str, max_wait: float = 15.0) -> list[float]:
    """Wait until the mailbox's scheduled retry is due, then queue it, as RQ's scheduler does.

    Real time passes (bounded by ``max_wait``): the connectors' process-wide gates remember a
    service's Retry-After, so a retry that jumped ahead in time would be refused by the gate, not
    by the service. Returns the retries' scheduled times (epoch seconds) for a test to check.
    """
    svc = services()
    due: list[float] = []
    for name in (QUEUE_INTERACTIVE, QUEUE_SYNC):
        registry = ScheduledJobRegistry(name, connection=svc.redis_raw)
        for job_id in registry.get_job_ids():
            if job_id != job_id_for(mailbox_id):
                continue
            at = registry.get_scheduled_time(job_id).timestamp()
            wait = at - time.time()
            assert wait <= max_wait, f"retry {wait:.1f} s away"
            time.sleep(max(0.0, wait))
            due.append(at)
            registry.requeue(job_id)
    return due


def job_of(mailbox_id: str) -> Job:
    """The mailbox's run job."""
    return Job.fetch(job_id_for(mailbox_id), connection=services().redis_raw)


def timed(action: Callable[[], Any]) -> float:
    """Seconds ``action`` took."""
    began = time.monotonic()
    action()
    return time.monotonic() - began
