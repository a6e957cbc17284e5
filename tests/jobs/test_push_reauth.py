"""Graph's ``reauthorizationRequired`` for several subscriptions of one mailbox: each is renewed,
whether its request came with another, while the renewal job was queued, or while it ran."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import SimpleWorker

from backend import create_app
from backend.extensions import QUEUE_SYNC, services
from backend.jobs.context import use_app
from backend.store.push import Subscription
from sandbox.https_client import HttpsClient

MID = "mbx-reauth-1"
SUBS = {"inbox": ("3f1e6a52-0000-4000-8000-0000000000a1", "state-inbox"),
        "sentitems": ("3f1e6a52-0000-4000-8000-0000000000a2", "state-sent"),
        "calendar": ("3f1e6a52-0000-4000-8000-0000000000a3", "state-calendar")}


class Recorder:
    """A push manager that records which subscriptions each renewal was asked for."""

    def __init__(self, during: Any = None) -> None:
        self.asked: list[frozenset[str]] = []
        self.during = during  # called on the first renewal: a request arriving while the job runs

    def renew(self, mid: str, now: float | None = None, only: frozenset[str] = frozenset()) -> int:
        """Record ``only``."""
        self.asked.append(only)
        if self.during is not None:
            during, self.during = self.during, None
            during()
        return len(only)


@pytest.fixture
def subscribed(app_config: dict[str, Any], redis_client: redis.Redis) -> Iterator[Flask]:
    """A running Microsoft 365 mailbox with its three subscriptions, none past half its life."""
    app = create_app({**app_config, "PUSH_NOTIFICATIONS": "on"})
    app.test_client_class = HttpsClient
    with app.app_context():
        store = services().store
        store.mailboxes.ensure(MID, "00D000000000001EAA")
        store.mailboxes.activate(MID, "microsoft", "rep@contoso.example")
        now = time.time()
        for kind, (sid, state) in SUBS.items():
            store.push.save(Subscription(sid, MID, kind, f"me/{kind}", now + 70 * 3600,
                                         store.push.hash_state(state), now))
    use_app(app)
    try:
        yield app
    finally:
        use_app(None)


def reauthorize(client: FlaskClient, kind: str) -> None:
    """Graph's lifecycle POST asking to reauthorize the subscription of ``kind``."""
    sid, state = SUBS[kind]
    body = {"value": [{"subscriptionId": sid, "clientState": state, "lifecycleEvent": "reauthorizationRequired"}]}
    assert client.post("/hooks/graph/lifecycle", json=body).status_code == 202


def run_jobs(app: Flask) -> None:
    """Run the sync queue's jobs here."""
    with app.app_context():
        svc = services()
        SimpleWorker([svc.queue(QUEUE_SYNC)], connection=svc.redis_raw).work(burst=True)


# Found in review: the second request found ``push-renew-{mid}`` queued, was refused as a duplicate
# and dropped; its subscription was not past half its life, so the job did not renew it, and its
# notifications stayed paused until then.
def test_two_requests_before_the_job_runs_renew_both(subscribed: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr("backend.jobs.push.manager", lambda: recorder)
    client = subscribed.test_client()
    reauthorize(client, "inbox")
    reauthorize(client, "sentitems")
    run_jobs(subscribed)
    assert set().union(*recorder.asked) == {SUBS["inbox"][0], SUBS["sentitems"][0]}
    with subscribed.app_context():
        assert services().store.push.take_renewals(MID) == frozenset()  # taken by the job


def test_a_request_while_the_job_runs_is_renewed_by_it(subscribed: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    client = subscribed.test_client()
    recorder = Recorder(during=lambda: reauthorize(client, "calendar"))  # refused as a duplicate: it runs
    monkeypatch.setattr("backend.jobs.push.manager", lambda: recorder)
    reauthorize(client, "inbox")
    run_jobs(subscribed)
    assert recorder.asked == [frozenset({SUBS["inbox"][0]}), frozenset({SUBS["calendar"][0]})]


def test_a_request_makes_the_mailbox_due_and_a_renewal_with_nothing_due_puts_it_back(subscribed: Flask) -> None:
    from backend.jobs.push import manager

    with subscribed.app_context():
        push = services().store.push
        earliest = min(s.renew_at for s in push.of(MID))
        now = time.time()
        push.ask_renewal(MID, [SUBS["inbox"][0]], now)
        # Due now: the clock's next check queues a job should the one running have looked already.
        assert push.due_for_renewal(now) == [MID]
        assert push.take_renewals(MID) == frozenset({SUBS["inbox"][0]})
        assert push.take_renewals(MID) == frozenset()
        # Renewed by then (this job found nothing to do): due again at the half-life, not every check.
        assert manager().renew(MID) == 0
        assert push.due_for_renewal(now) == []
        assert push.due_for_renewal(earliest) == [MID]
