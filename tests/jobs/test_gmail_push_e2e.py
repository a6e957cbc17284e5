"""Gmail push end to end: ``users.watch`` to the Pub/Sub topic, a signed push to ``/hooks/gmail``
over https on loopback, the normal run; forged tokens refused; the watch renewed by the clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from backend.config import Settings
from backend.extensions import services
from backend.sync.push import kinds_for
from sandbox.harness.gmail import GmailHarness
from sandbox.https_client import PUBLIC_BASE_URL
from sandbox.microsoft import new_key
from sandbox.pubsub import FakePubSub
from sandbox.server import FakeServer
from sandbox.smtp import SmtpSink
from sandbox.tls import CertPair, TestCA
from tests.conftest import RunningFake
from tests.e2e import SyncEnv, Worker, start_clock, wait_until
from tests.jobs.conftest import make_env

pytestmark = pytest.mark.slow

CAROL = "carol@customer.example"
TOPIC = "projects/sidebar-sync/topics/gmail"
ACCOUNT = "gmail-push@sidebar-sync.iam.gserviceaccount.com"


class GmailPushEnv:
    """A Gmail sync environment with push configured, the app served where Pub/Sub pushes."""

    def __init__(self, env: SyncEnv, server: FakeServer) -> None:
        self.env = env
        self.server = server
        self.clock: Worker | None = None

    @property
    def harness(self) -> GmailHarness:
        """The Gmail harness."""
        assert isinstance(self.env.harness, GmailHarness)
        return self.env.harness

    @property
    def pubsub(self) -> FakePubSub:
        """The fake Pub/Sub."""
        return self.harness.gmail.pubsub

    def start(self) -> None:
        """Log in, activate, worker and clock; wait for the watch and the setup runs."""
        self.env.log_in()
        self.env.activate()
        self.env.worker()
        self.clock = start_clock(self.env.config, self.env.log_dir)
        wait_until(lambda: self.harness.address in self.pubsub.watches, 60, "the watch", self.env.workers[-1])
        self.env.wait_runs(2)

    def logged(self, message_id: str) -> bool:
        """Whether the email is in the fake Salesforce."""
        return any(m["MessageIdentifier"] == message_id for m in self.env.sf.all("EmailMessage"))

    def post(self, body: Any, token: str | None, **kwargs: Any) -> requests.Response:
        """POST to the served app's /hooks/gmail as Pub/Sub would (or a forger)."""
        headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        if body is not None:
            kwargs["json"] = body
        return requests.post(f"{self.server.url}/hooks/gmail", headers=headers, verify=self.harness.ca_path,
                             timeout=10, **kwargs)


@pytest.fixture
def gmail_env(app_config: dict[str, Any], ca: TestCA, server_cert: CertPair, fake_salesforce: RunningFake,
              smtp_sink: SmtpSink, redis_client: redis.Redis, tmp_path: Path) -> Iterator[GmailPushEnv]:
    """Gmail push configured: the topic, its push subscription to /hooks/gmail, the push account."""
    env = make_env(app_config, "google", ca, server_cert, fake_salesforce, smtp_sink, tmp_path,
                   GOOGLE_PUBSUB_TOPIC=TOPIC, GOOGLE_PUBSUB_PUSH_ACCOUNT=ACCOUNT, PUSH_DEBOUNCE_SECONDS=1,
                   PUSH_CHECK_SECONDS=1)
    server = FakeServer(env.app, server_cert).start()
    made = GmailPushEnv(env, server)
    made.pubsub.subscribe(TOPIC, f"{PUBLIC_BASE_URL}/hooks/gmail", ACCOUNT)
    made.pubsub.routes[PUBLIC_BASE_URL] = server.url
    env.sf.add_contact(CAROL, "Carol")
    try:
        yield made
    finally:
        if made.clock is not None:
            made.clock.stop()
        env.close()
        server.stop()
        env.harness.close()


def test_a_gmail_push_logs_the_email_without_waiting(gmail_env: GmailPushEnv) -> None:
    gmail_env.start()
    runs_before = len(gmail_env.env.runs())
    started = time.monotonic()
    gmail_env.harness.add_email("inbox", subject="Pushed", sender=CAROL, to=[gmail_env.harness.address],
                                body="b", message_id="<gmail-push@customer.example>", when=datetime.now(tz=UTC))
    wait_until(lambda: gmail_env.logged("<gmail-push@customer.example>"), 30, "the pushed email",
               gmail_env.env.workers[-1])
    assert time.monotonic() - started < 15
    gmail_env.pubsub.flush()
    assert gmail_env.pubsub.pushes and all(status == 204 for _, status in gmail_env.pubsub.pushes)
    gmail_env.env.wait_runs(runs_before + 1)
    assert len(gmail_env.env.runs()) == runs_before + 1
    body = gmail_env.env.client.get("/api/sync", headers=gmail_env.env.session.headers).get_json()  # type: ignore[union-attr]
    assert body["instant_sync"]["on"] is True


def test_forged_and_foreign_pushes_are_refused_without_effect(gmail_env: GmailPushEnv) -> None:
    gmail_env.start()
    runs_before = len(gmail_env.env.runs())
    sub = gmail_env.pubsub.topics[TOPIC]
    body = gmail_env.pubsub.body_for(gmail_env.harness.address, 99999, sub)
    forged = [
        None,  # no token
        "not-a-jwt",
        gmail_env.pubsub.push_token(sub, key=new_key("attacker")),  # not Google's key
        gmail_env.pubsub.push_token(sub, account="someone@evil.example"),  # not our push account
        gmail_env.pubsub.push_token(sub, audience="https://elsewhere.example/hooks/gmail"),
    ]
    for token in forged:
        resp = gmail_env.post(body, token)
        assert resp.status_code == 403, (token, resp.status_code)
    valid = gmail_env.pubsub.push_token(sub)
    assert gmail_env.post(b"not json", valid, data=b"not json").status_code in (400, 415)
    assert gmail_env.post({"message": {"data": "%%%"}}, valid).status_code == 400
    assert gmail_env.post(None, valid, data=b"x" * 100_000,
                          headers={"Content-Type": "application/json"}).status_code == 413
    stranger = gmail_env.pubsub.body_for("stranger@example.com", 1, sub)
    assert gmail_env.post(stranger, valid).status_code == 204  # acknowledged, nothing else
    assert requests.get(f"{gmail_env.server.url}/hooks/gmail", verify=gmail_env.harness.ca_path,
                        timeout=10).status_code in (404, 405)
    time.sleep(3)  # longer than the debounce: nothing was planned
    assert len(gmail_env.env.runs()) == runs_before
    with gmail_env.env.app.app_context():
        assert not services().store.redis.exists(services().store.keys("push", "planned", gmail_env.env.uid))


def test_the_watch_is_renewed_by_the_clock(gmail_env: GmailPushEnv) -> None:
    gmail_env.pubsub.lifetime_seconds = 8
    gmail_env.start()
    first = gmail_env.pubsub.watches[gmail_env.harness.address].expires
    wait_until(lambda: gmail_env.pubsub.watches[gmail_env.harness.address].expires > first + 2, 30,
               "a renewed watch", gmail_env.env.workers[-1])
    time.sleep(10)  # past the first watch's end
    gmail_env.harness.add_email("inbox", subject="Later", sender=CAROL, to=[gmail_env.harness.address],
                                body="b", message_id="<gmail-later@customer.example>", when=datetime.now(tz=UTC))
    wait_until(lambda: gmail_env.logged("<gmail-later@customer.example>"), 30, "the email after renewals")


def test_without_a_topic_gmail_polls() -> None:
    assert kinds_for(Settings.load({"SIDEBAR_ENV": "development"}), "google") == ()
    with_topic = Settings.load({"SIDEBAR_ENV": "development", "GOOGLE_PUBSUB_TOPIC": TOPIC,
                                "GOOGLE_PUBSUB_PUSH_ACCOUNT": ACCOUNT})
    assert kinds_for(with_topic, "google") == ("gmail",)
    assert kinds_for(with_topic, "exchange") == ()  # on-premises Exchange always polls



def test_pause_stops_the_watch(gmail_env: GmailPushEnv) -> None:
    gmail_env.start()
    headers = gmail_env.env.session.headers  # type: ignore[union-attr]
    assert gmail_env.env.client.post("/api/sync/pause", headers=headers).status_code == 200
    wait_until(lambda: gmail_env.harness.address not in gmail_env.pubsub.watches, 30, "the watch stopped",
               gmail_env.env.workers[-1])

    def forgotten() -> bool:
        # The job stops the watch at Google first, then forgets it here: wait for both.
        with gmail_env.env.app.app_context():
            return services().store.push.of(gmail_env.env.uid) == []

    wait_until(forgotten, 10, "the watch forgotten", gmail_env.env.workers[-1])
