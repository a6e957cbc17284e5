"""The org's Salesforce API budget: when background runs of an org back off, and for how long."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from backend.config import Settings
from backend.connectors.crm import ApiUsage
from backend.store import Store
from backend.store.orgs import OrgSettings

log = logging.getLogger(__name__)

# Background runs for an org back off this long when its API usage passes the budget (30 min,
# then 2.5 h, 4.5 h, 6.5 h), as the reference product does; "Sync now" is never held back.
BACKOFF_STEPS_SECONDS = (1800, 9000, 16200, 23400)
# A usage reading older than this does not stop a run before it starts.
USAGE_FRESH_SECONDS = 30 * 60


def iso(ts: float) -> str:
    """A UNIX time as ISO 8601 (UTC, seconds)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def over_budget(org: OrgSettings, settings: Settings, now: float) -> bool:
    """Whether the org's last fresh usage reading is at or over ``SF_API_BUDGET_PERCENT``."""
    if not org.api_max or now - org.api_seen_at > USAGE_FRESH_SECONDS:
        return False
    return 100.0 * org.api_used / org.api_max >= settings.SF_API_BUDGET_PERCENT


def enter_backoff(store: Store, org_id: str, now: float | None = None) -> float:
    """Back off background runs of an org one step further; returns the time they resume."""
    now = time.time() if now is None else now
    org = store.orgs.get(org_id)
    if org.api_backoff_until > now:
        return org.api_backoff_until
    level = min(org.api_backoff_level + 1, len(BACKOFF_STEPS_SECONDS))
    until = now + BACKOFF_STEPS_SECONDS[level - 1]
    store.orgs.update(org_id, api_backoff_level=level, api_backoff_until=until)
    log.warning("salesforce api budget: background sync backs off org=%s level=%d until=%s", org_id, level,
                iso(until))
    return until


def backoff_before_run(store: Store, settings: Settings, org: OrgSettings, now: float) -> float | None:
    """For a background run: the time it must wait until (backing off further if over budget), else None."""
    if org.api_backoff_until > now:
        return org.api_backoff_until
    if over_budget(org, settings, now):
        return enter_backoff(store, org.org_id, now)
    return None


def end_backoff(store: Store, settings: Settings, org: OrgSettings, usage: ApiUsage, now: float | None = None) -> None:
    """After a background run that got through: the next backoff starts from the first step again.

    Only when the usage it saw is back under the budget (a run still over it that wrote nothing
    must not restart the ladder), and never cancelling a backoff a colleague's run entered meanwhile.
    """
    if org.api_backoff_level and usage.percent < settings.SF_API_BUDGET_PERCENT:
        store.orgs.end_backoff(org.org_id, time.time() if now is None else now)
