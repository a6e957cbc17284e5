"""Push's schedule rules: renewal times, the 2 h poll while healthy, the fall back to 30 minutes."""

from __future__ import annotations

import time
from typing import Any

import redis
from flask import Flask

from backend import create_app
from backend.extensions import QUEUE_SYNC, services
from backend.jobs.push import ENSURE_RETRY_SECONDS, after_run
from backend.store.mailboxes import SyncState
from backend.store.push import PushHealth, Subscription
from backend.sync.cadence import schedule_next
from backend.sync.push import GMAIL_RENEW_SECONDS, PUSH_POLL_SECONDS, fall_back, poll_interval


def test_a_subscription_is_renewed_at_half_its_life_and_a_gmail_watch_daily() -> None:
    now = 1_000_000.0
    graph = Subscription("s", "m", "inbox", "r", now + 3 * 86400, "h", now)
    assert graph.renew_at == now + 1.5 * 86400
    gmail = Subscription("g", "m", "gmail", "r", now + 7 * 86400, "h", now, GMAIL_RENEW_SECONDS)
    assert gmail.renew_at == now + 86400


def test_healthy_push_polls_every_2_hours_and_a_failure_goes_back_to_30_minutes(app: Flask) -> None:
    with app.app_context():
        svc = services()
        store, settings = svc.store, svc.settings
        mid = "mbx-cadence"
        store.mailboxes.ensure(mid, "00D000000000001EAA")
        store.mailboxes.activate(mid, "microsoft", "rep@contoso.example")
        assert store.mailboxes.get(mid).state is SyncState.RUNNING  # type: ignore[union-attr]
        now = time.time()
        assert schedule_next(store, settings, mid, True, now) == now + settings.SYNC_INTERVAL_SECONDS
        store.push.set_health(mid, True)
        assert schedule_next(store, settings, mid, True, now) == now + PUSH_POLL_SECONDS
        fall_back(store, settings, mid, "Instant sync could not be renewed: refused.", now)
        assert store.schedule.next_of(mid) == now + settings.SYNC_INTERVAL_SECONDS
        health = store.push.health(mid)
        assert health is not None and not health.on and "refused" in health.reason
        # The poll no longer stretches to 2 h for push: the quiet-run rule alone applies again.
        assert schedule_next(store, settings, mid, True, now) == now + settings.SYNC_INTERVAL_SECONDS


def _running(app: Flask, mid: str) -> None:
    store = services().store
    store.mailboxes.ensure(mid, "00D000000000001EAA")
    store.mailboxes.activate(mid, "microsoft", "rep@contoso.example")


def test_a_longer_base_interval_is_kept_while_push_is_healthy(app: Flask) -> None:
    with app.app_context():
        store = services().store
        mid = "mbx-long-interval"
        _running(app, mid)
        store.push.set_health(mid, True)
        assert poll_interval(store, mid, 6 * 3600) == 6 * 3600
        assert poll_interval(store, mid, 1800) == PUSH_POLL_SECONDS
        store.push.set_health(mid, False, "off")
        assert poll_interval(store, mid, 1800) == 1800


def test_a_refusal_while_push_was_already_off_leaves_the_cadence_alone(app: Flask) -> None:
    with app.app_context():
        svc = services()
        store, settings = svc.store, svc.settings
        mid = "mbx-off-again"
        _running(app, mid)
        now = time.time()
        store.mailboxes.update(mid, quiet_runs=5)
        store.schedule.set_next(mid, now + 4 * 3600)
        store.push.set_health(mid, False, "Consent missing.", now - 60)
        fall_back(store, settings, mid, "Consent still missing.", now)
        # Not an on -> off change: the quiet-run count and the planned run stay as they were.
        assert store.mailboxes.get(mid).quiet_runs == 5  # type: ignore[union-attr]
        assert store.schedule.next_of(mid) == now + 4 * 3600
        assert store.push.health(mid) == PushHealth(False, "Consent still missing.", now)


def test_a_refused_push_is_not_asked_again_at_every_run(app_config: dict[str, Any],
                                                        redis_client: redis.Redis) -> None:
    app = create_app({**app_config, "PUSH_NOTIFICATIONS": "on"})
    with app.app_context():
        store = services().store
        mid = "mbx-refused-push"
        _running(app, mid)
        assert after_run(mid)  # no subscription yet: ensure is queued
        services().queue(QUEUE_SYNC).empty()
        store.push.set_health(mid, False, "Consent missing.", time.time() - 60)
        assert not after_run(mid)  # refused a minute ago: the next runs do not ask again
        store.push.set_health(mid, False, "Consent missing.", time.time() - ENSURE_RETRY_SECONDS - 1)
        assert after_run(mid)  # an hour later they do
        services().queue(QUEUE_SYNC).empty()
