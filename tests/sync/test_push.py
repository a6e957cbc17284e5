"""Push's schedule rules: renewal times, the 2 h poll while healthy, the fall back to 30 minutes."""

from __future__ import annotations

import time

from flask import Flask

from backend.extensions import services
from backend.store.mailboxes import SyncState
from backend.store.push import Subscription
from backend.sync.cadence import schedule_next
from backend.sync.push import GMAIL_RENEW_SECONDS, PUSH_POLL_SECONDS, fall_back


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
