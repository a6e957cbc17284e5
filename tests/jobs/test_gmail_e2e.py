"""Gmail end to end: consent over HTTP, activation, a real ``rq worker`` process logging Gmail mail and
Calendar meetings in the fake Salesforce; reruns, a stale historyId and an expired syncToken add nothing twice.

The provider-agnostic end-to-end checks (auth failures disabling sync with one email, a killed
worker, the pane's actions) run for Gmail too, through the harness map (``test_sync_e2e.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from backend.connectors.google import REFRESH_SECRET
from backend.extensions import services
from sandbox.harness.gmail import GmailHarness
from sandbox.smtp import SmtpSink
from sandbox.tls import CertPair, TestCA
from tests.auth.test_google import authorize, finish, start_consent
from tests.conftest import RunningFake
from tests.e2e import SyncEnv
from tests.jobs.conftest import make_env
from tests.sfhelpers import redis_text

pytestmark = pytest.mark.slow

CAROL, DAVE = "carol@customer.example", "dave@customer.example"


@pytest.fixture
def env(app_config: dict[str, Any], ca: TestCA, server_cert: CertPair, fake_salesforce: RunningFake,
        smtp_sink: SmtpSink, redis_client: redis.Redis, tmp_path: Path) -> Iterator[SyncEnv]:
    """A sync environment on the Gmail harness, Carol and Dave as Contacts."""
    made = make_env(app_config, "google", ca, server_cert, fake_salesforce, smtp_sink, tmp_path)
    made.sf.add_contact(CAROL, "Carol")
    made.sf.add_contact(DAVE, "Dave")
    try:
        yield made
    finally:
        made.close()
        made.harness.close()


def harness(env: SyncEnv) -> GmailHarness:
    """The env's harness, typed."""
    assert isinstance(env.harness, GmailHarness)
    return env.harness


def consent(env: SyncEnv) -> None:
    """Connect Gmail the way the dialog does: /auth/google/start, Google's screen, the callback."""
    assert env.session is not None
    location = start_consent(env.client, env.session)
    status, payload = finish(env.client, authorize(location, env.ca_path, username=env.harness.address))
    assert (status, payload["status"]) == (200, "ok"), payload


def test_consent_then_runs_log_mail_and_meetings_once_and_resync_adds_nothing_twice(
    env: SyncEnv, redis_url: str
) -> None:
    h = harness(env)
    now = datetime.now(tz=UTC)
    for i in range(5):
        h.add_email("inbox", subject=f"gmail subject {i}", sender=CAROL, to=[h.address],
                    body=f"gmail secret body {i}", message_id=f"<gm-{i}@customer.example>",
                    when=now - timedelta(hours=3, minutes=i))
    h.add_email("sent", subject="gmail reply subject", sender=h.address, to=[DAVE], body="gmail reply body",
                message_id="<gm-reply@acme.example>", when=now - timedelta(hours=1))
    # Never logged: a draft and spam.
    h.gmail.add_message(h.address, ["DRAFT"], subject="gmail draft subject", sender=h.address, to=[CAROL])
    h.gmail.add_message(h.address, ["SPAM"], subject="gmail spam subject", sender=CAROL, to=[h.address])
    start = (now + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    h.add_event(subject="gmail meeting subject", start=start, end=start + timedelta(hours=1), organizer=h.address,
                attendees=[CAROL], uid="gm-meeting-1@google.com", body="gmail agenda body")
    h.add_event(subject="gmail private subject", start=start, end=start + timedelta(hours=1), organizer=h.address,
                attendees=[DAVE], uid="gm-private@google.com", sensitivity="private")

    env.log_in(username="alice@acme.example", password="alice-pw")
    consent(env)
    worker = env.worker()
    first = env.wait_runs(1)
    assert first["status"] == "ok", first
    assert first["counts"]["emails_written"] == 6 and first["counts"]["events_written"] == 1, first["counts"]
    assert sorted(m["MessageIdentifier"] for m in env.sf.all("EmailMessage")) == sorted(
        [f"<gm-{i}@customer.example>" for i in range(5)] + ["<gm-reply@acme.example>"])
    assert [e["Subject"] for e in env.sf.all("Event")] == ["gmail meeting subject"]
    # The backfill went through batches, and quota units were spent as Google counts them.
    assert h.gmail.batch_sizes and max(h.gmail.batch_sizes) <= 50
    assert h.gmail.units(h.address) > 0

    # Nothing new: no Salesforce call at all.
    env.sf.reset_calls()
    assert env.run_now()
    quiet = env.wait_runs(2)
    assert quiet["status"] == "ok" and quiet["counts"]["read"] == 0 and env.sf.calls == []

    # History no longer kept and the sync token expired: one bounded resync each, nothing twice.
    h.add_email("inbox", subject="gmail late subject", sender=DAVE, to=[h.address], body="late",
                message_id="<gm-late@customer.example>")
    h.expire_cursors()
    assert env.run_now()
    resync = env.wait_runs(3)
    assert resync["status"] == "ok", resync
    assert resync["counts"]["written"] == 1 and resync["counts"]["duplicates"] >= 6, resync["counts"]
    keys = [m["MessageIdentifier"] for m in env.sf.all("EmailMessage")]
    assert len(keys) == len(set(keys)) == 7
    assert len(env.sf.all("Event")) == 1

    # And afterwards the new cursors are quiet again.
    env.sf.reset_calls()
    assert env.run_now()
    assert env.wait_runs(4)["counts"]["read"] == 0 and env.sf.calls == []
    worker.stop()

    # No subject, body or refresh token in clear anywhere in Redis.
    text = redis_text(redis.Redis.from_url(redis_url, decode_responses=True, encoding_errors="replace"))
    for leak in ("gmail subject", "gmail secret body", "gmail reply", "gmail draft", "gmail spam", "gmail meeting",
                 "gmail agenda", "gmail private", *h.google.refresh_tokens, *h.google.access_tokens):
        assert leak not in text, leak
    with env.app.app_context():
        assert services().store.secrets.get("mailbox", env.uid, REFRESH_SECRET) in h.google.refresh_tokens
