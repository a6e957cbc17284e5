"""The schedule policy: when a mailbox's next background run is due (quiet runs stretch the interval).

The next run is planned from the planned start of the slot the run served, not from its end: a
mailbox runs every interval, not every interval plus its run time plus the wait for the next tick.
A run that overran its interval is due at once (the next tick), never followed by catch-up runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.config import Settings
from backend.store import Store
from backend.store.mailboxes import SyncState
from backend.sync.push import poll_interval

# Quiet runs in a row after which the interval doubles, then quadruples (30 -> 60 -> 120 min).
QUIET_RUNS_DOUBLE = 2
QUIET_RUNS_QUADRUPLE = 4
# How much longer the interval gets after those quiet runs (the pane says it in words).
QUIET_FACTORS = (2, 4)


def slot_start(store: Store, last_run: dict[str, Any] | None, mid: str, now: float) -> float:
    """When the slot this run served was planned to start (the run's own start when no slot is known)."""
    planned = store.schedule.slot_start(mid, now)
    if planned is not None:
        return planned
    started = (last_run or {}).get("started_at")
    return datetime.fromisoformat(started).timestamp() if isinstance(started, str) else now


def schedule_next(store: Store, settings: Settings, mid: str, changed: bool | None, now: float) -> float | None:
    """Set the next background run: the interval stretches after quiet runs; None when not running.

    ``changed`` is None after a failed run (neither quiet nor busy: the interval stays).
    """
    mailbox = store.mailboxes.get(mid)
    if mailbox is None or mailbox.state is not SyncState.RUNNING:
        store.schedule.remove_unless_running(mid)
        return None
    base = settings.SYNC_INTERVAL_SECONDS
    quiet = mailbox.quiet_runs
    if changed is True:
        quiet = 0
    elif changed is False:
        quiet += 1
    interval = base * (QUIET_FACTORS[1] if quiet >= QUIET_RUNS_QUADRUPLE else
                       QUIET_FACTORS[0] if quiet >= QUIET_RUNS_DOUBLE else 1)
    # While push is healthy the poll is only the safety net (2 h); when it is not, the above.
    interval = poll_interval(store, mid, interval)
    when = max(slot_start(store, mailbox.last_run, mid, now) + interval, now)
    org = store.orgs.get(mailbox.org_id)
    if org.api_backoff_until > when:
        when = org.api_backoff_until
    store.mailboxes.update(mid, quiet_runs=quiet, interval_seconds=interval)
    store.schedule.set_next(mid, when)
    return when
