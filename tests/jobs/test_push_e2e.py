"""Instant sync end to end: the fake Graph's change notifications reach the app over https on
loopback (served by a real server with the test CA), a real ``rq worker`` and a real ``rq cron``
clock; the runs are the normal delta runs, and polling stays the safety net.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from backend.admin.directory import Query, list_users, user_row
from backend.extensions import services
from sandbox.graph_push import GraphPush
from sandbox.harness.graph import GraphHarness
from sandbox.https_client import PUBLIC_BASE_URL
from sandbox.server import FakeServer
from sandbox.smtp import SmtpSink
from sandbox.tls import CertPair, TestCA
from tests.conftest import RunningFake
from tests.e2e import SyncEnv, Worker, start_clock, wait_until
from tests.jobs.conftest import make_env

pytestmark = pytest.mark.slow

CAROL = "carol@customer.example"


@dataclass
class PushEnv:
    """A Microsoft 365 sync environment whose app Graph can reach, with a worker and a clock."""

    env: SyncEnv
    server: FakeServer
    clock: Worker | None = None

    @property
    def harness(self) -> GraphHarness:
        """The Graph harness."""
        assert isinstance(self.env.harness, GraphHarness)
        return self.env.harness

    @property
    def push(self) -> GraphPush:
        """The fake Graph's subscriptions."""
        return self.harness.graph.push

    def start(self) -> None:
        """Log in, activate, start a worker and the clock; wait until push is on and the setup runs are done."""
        self.env.log_in()
        self.env.activate()
        self.env.worker()
        self.clock = start_clock(self.env.config, self.env.log_dir)
        wait_until(lambda: len(self.push.of(self.harness.address)) == 3, 60, "three subscriptions",
                   self.env.workers[-1])
        # The first run, then the one after the subscriptions were made (what arrived meanwhile).
        self.env.wait_runs(2)
        assert self.healthy()

    def healthy(self) -> bool:
        """Whether the app says instant sync is on for the mailbox."""
        with self.env.app.app_context():
            return services().store.push.healthy(self.env.uid)

    def logged(self, message_id: str) -> bool:
        """Whether the email is in the fake Salesforce."""
        return any(m["MessageIdentifier"] == message_id for m in self.env.sf.all("EmailMessage"))

    def email(self, message_id: str, subject: str = "Hello") -> str:
        """An email from Carol arrives in the inbox (the fake Graph notifies the app)."""
        return self.harness.add_email("inbox", subject=subject, sender=CAROL, to=[self.harness.address],
                                      body="body", message_id=message_id, when=datetime.now(tz=UTC))

    def sub_id(self, folder: str = "inbox") -> str:
        """The live subscription of a folder."""
        (sub,) = [s for s in self.push.of(self.harness.address) if s.folder == folder]
        return sub.id

    def close(self) -> None:
        """Stop the clock, workers, the app server and the fakes."""
        if self.clock is not None:
            self.clock.stop()
        self.env.close()
        self.server.stop()
        self.env.harness.close()


@pytest.fixture
def push_env(app_config: dict[str, Any], ca: TestCA, server_cert: CertPair, fake_salesforce: RunningFake,
             smtp_sink: SmtpSink, redis_client: redis.Redis, tmp_path: Path) -> Iterator[PushEnv]:
    """Instant sync on, the app served on loopback https where the fake Graph delivers."""
    env = make_env(app_config, "microsoft", ca, server_cert, fake_salesforce, smtp_sink, tmp_path,
                   PUSH_NOTIFICATIONS="on", PUSH_DEBOUNCE_SECONDS=1, PUSH_CHECK_SECONDS=1)
    server = FakeServer(env.app, server_cert).start()
    made = PushEnv(env, server)
    # PUBLIC_BASE_URL (what the app tells Graph) resolves to where the app listens, as DNS would.
    made.push.routes[PUBLIC_BASE_URL] = server.url
    env.sf.add_contact(CAROL, "Carol")
    try:
        yield made
    finally:
        made.close()


def test_a_new_email_is_in_salesforce_without_waiting_for_the_interval(push_env: PushEnv) -> None:
    push_env.start()
    # The handshake was answered for both URLs of all three subscriptions.
    validations = [d for d in push_env.push.deliveries if d.kind == "validation"]
    assert len(validations) == 6 and all(d.status == 200 for d in validations)
    with push_env.env.app.app_context():
        next_run = services().store.schedule.next_of(push_env.env.uid)
    # Push is healthy: the poll is only the safety net, 2 hours away (never more).
    assert next_run is not None and 7000 < next_run - time.time() <= 7200
    runs_before = len(push_env.env.runs())
    started = time.monotonic()
    push_env.email("<push-1@customer.example>")
    wait_until(lambda: push_env.logged("<push-1@customer.example>"), 30, "the email in Salesforce",
               push_env.env.workers[-1])
    took = time.monotonic() - started
    assert took < 15, took
    newest = push_env.env.wait_runs(runs_before + 1)
    assert newest["counts"]["emails_written"] == 1
    assert len(push_env.env.runs()) == runs_before + 1
    status = push_env.env.client.get("/api/sync", headers=push_env.env.session.headers)  # type: ignore[union-attr]
    assert status.get_json()["instant_sync"]["on"] is True


def test_a_burst_of_100_notifications_makes_one_run(push_env: PushEnv) -> None:
    push_env.start()
    runs_before = len(push_env.env.runs())
    for i in range(100):
        push_env.email(f"<burst-{i}@customer.example>", f"burst {i}")
    push_env.push.flush()
    notifications = [d for d in push_env.push.deliveries if d.kind == "notification"]
    assert len(notifications) == 100 and all(d.status == 202 for d in notifications)
    wait_until(lambda: all(push_env.logged(f"<burst-{i}@customer.example>") for i in range(100)), 60,
               "the burst in Salesforce", push_env.env.workers[-1])
    push_env.env.wait_runs(runs_before + 1)
    time.sleep(3)  # longer than the debounce: nothing else was planned
    runs = push_env.env.runs()
    assert len(runs) == runs_before + 1
    assert runs[0]["counts"]["emails_written"] == 100


def test_subscriptions_are_renewed_before_they_expire(push_env: PushEnv) -> None:
    push_env.push.lifetime_seconds = 8  # Graph decides the lifetime; the app keeps what it grants
    push_env.start()
    ids = {s.id for s in push_env.push.of(push_env.harness.address)}
    time.sleep(12)  # past the first lifetime: alive only if the clock renewed them at half of it
    live = push_env.push.of(push_env.harness.address)
    assert {s.id for s in live} == ids
    renewals = push_env.harness.graph_server.recorder.matching("PATCH", "/v1.0/subscriptions/")
    assert len(renewals) >= 6, len(renewals)
    assert push_env.healthy()
    push_env.email("<after-renewal@customer.example>")
    wait_until(lambda: push_env.logged("<after-renewal@customer.example>"), 30, "the email after renewals")


def test_reauthorization_required_renews_the_subscription(push_env: PushEnv) -> None:
    push_env.start()
    sub = push_env.sub_id()
    push_env.push.lifecycle(sub, "reauthorizationRequired")
    wait_until(lambda: push_env.harness.graph_server.recorder.matching("PATCH", f"/v1.0/subscriptions/{sub}"), 30,
               "the renewal", push_env.env.workers[-1])


def test_a_removed_subscription_is_recreated_and_nothing_is_lost(push_env: PushEnv) -> None:
    push_env.start()
    old = push_env.sub_id()
    push_env.push.lifecycle(old, "subscriptionRemoved")
    push_env.push.flush()
    # Mail that arrived while nothing watched the inbox.
    push_env.email("<while-removed@customer.example>")
    wait_until(lambda: push_env.logged("<while-removed@customer.example>"), 60, "the email sent while removed",
               push_env.env.workers[-1])
    new = push_env.sub_id()
    assert new != old
    with push_env.env.app.app_context():
        kept = {s.id for s in services().store.push.of(push_env.env.uid)}
    assert new in kept and old not in kept


def test_missed_notifications_are_read_by_a_delta_run(push_env: PushEnv) -> None:
    push_env.start()
    runs_before = len(push_env.env.runs())
    push_env.push.drop_notifications = True
    push_env.email("<missed@customer.example>")
    time.sleep(3)
    assert len(push_env.env.runs()) == runs_before and not push_env.logged("<missed@customer.example>")
    push_env.push.drop_notifications = False
    push_env.push.lifecycle(push_env.sub_id(), "missed")
    wait_until(lambda: push_env.logged("<missed@customer.example>"), 60, "the missed email",
               push_env.env.workers[-1])


def test_pause_deletes_the_subscriptions_and_resume_makes_them_again(push_env: PushEnv) -> None:
    push_env.start()
    headers = push_env.env.session.headers  # type: ignore[union-attr]
    assert push_env.env.client.post("/api/sync/pause", headers=headers).status_code == 200
    wait_until(lambda: not push_env.push.of(push_env.harness.address), 30, "subscriptions deleted",
               push_env.env.workers[-1])
    assert push_env.env.client.post("/api/sync/resume", headers=headers).status_code == 200
    wait_until(lambda: len(push_env.push.of(push_env.harness.address)) == 3, 60, "subscriptions made again",
               push_env.env.workers[-1])


def test_a_failed_renewal_turns_instant_sync_off_and_polls_every_30_minutes(push_env: PushEnv) -> None:
    push_env.push.lifetime_seconds = 8
    push_env.start()
    push_env.harness.revoke_credentials()
    push_env.harness.ms.expire_access_tokens()
    wait_until(lambda: not push_env.healthy(), 30, "instant sync off", push_env.env.workers[-1])
    with push_env.env.app.app_context():
        next_run = services().store.schedule.next_of(push_env.env.uid)
    assert next_run is not None and next_run - time.time() <= 1800
    body = push_env.env.client.get("/api/sync", headers=push_env.env.session.headers).get_json()  # type: ignore[union-attr]
    assert body["instant_sync"]["on"] is False
    assert body["instant_sync"]["text"].startswith("Instant sync off: Instant sync could not be renewed")
    # The admin console's rows say it too, with the reason (one user's row, and the org's rows).
    with push_env.env.app.app_context():
        store = services().store
        row = user_row(store, push_env.env.uid)
        page = list_users(store, push_env.env.mailbox().org_id, Query(per_page=200))
        listed = [r for r in page["users"] if r["id"] == push_env.env.uid]
    for found in (row, *listed):
        assert found is not None and found["instant_sync"]["on"] is False
        assert found["instant_sync"]["reason"].startswith("Instant sync could not be renewed")
    assert len(listed) == 1


def test_a_subscription_graph_let_expire_is_made_again(push_env: PushEnv) -> None:
    push_env.push.lifetime_seconds = 8
    push_env.start()
    old = push_env.sub_id()
    push_env.push.expire(old)  # Graph no longer has it: its renewal is a 404
    wait_until(lambda: any(s.folder == "inbox" and s.id != old for s in push_env.push.of(push_env.harness.address)),
               30, "a new inbox subscription", push_env.env.workers[-1])
    push_env.email("<after-expiry@customer.example>")
    wait_until(lambda: push_env.logged("<after-expiry@customer.example>"), 30, "the email after the new subscription")
    assert push_env.healthy()


def test_deactivate_deletes_the_subscriptions_at_graph_first(push_env: PushEnv) -> None:
    push_env.start()
    assert len(push_env.push.of(push_env.harness.address)) == 3
    headers = push_env.env.session.headers  # type: ignore[union-attr]
    assert push_env.env.client.post("/api/sync/deactivate", headers=headers).status_code == 200
    # At once, while the credentials still existed: no notification for this mailbox comes again.
    assert push_env.push.of(push_env.harness.address) == []
    deletes = push_env.harness.graph_server.recorder.matching("DELETE", "/v1.0/subscriptions/")
    assert len(deletes) == 3 and all(c.status == 204 for c in deletes)
    with push_env.env.app.app_context():
        assert services().store.push.of(push_env.env.uid) == []
