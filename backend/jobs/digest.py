"""The admins' daily digest (``rq cron``): once a day per org, and only when something needs them."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from rq import cron

from backend.admin.digest import digest_for, digest_message, orgs_with_mailboxes
from backend.extensions import QUEUE_NOTIFY, Services, services
from backend.jobs.context import worker_app
from backend.jobs.notify import send_mail

log = logging.getLogger(__name__)

# The clock checks hourly; the once-marker (per org and UTC day) makes it one email a day at most.
DIGEST_CHECK_SECONDS = 3600
ONCE_TTL_SECONDS = 2 * 24 * 3600


def send_digests(svc: Services, now: float) -> dict[str, Any]:
    """Send each org's digest that is due today; returns counts."""
    store, settings = svc.store, svc.settings
    day = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
    sent = quiet = 0
    for org_id in orgs_with_mailboxes(store):
        digest = digest_for(store, org_id, now)
        if not digest.needed:
            quiet += 1
            continue
        if not settings.SMTP_URL:
            log.warning("digest due but SMTP_URL is not set org=%s", org_id)
            continue
        # Marked before sending: a crash mid-send loses one day's digest rather than sending two.
        if not store.once.first_use("admin-digest", f"{org_id}:{day}", ONCE_TTL_SECONDS):
            continue
        send_mail(settings, digest_message(digest, f"{settings.PUBLIC_BASE_URL}/admin", settings.MAIL_FROM))
        sent += 1
        log.info("admin digest sent org=%s disabled=%d stale=%d", org_id, len(digest.disabled), len(digest.stale))
    return {"sent": sent, "quiet": quiet}


def digest_tick() -> dict[str, Any]:
    """RQ job: the daily digests (run hourly by the clock; each org gets at most one a day)."""
    with worker_app().app_context():
        return send_digests(services(), time.time())


cron.register(digest_tick, queue_name=QUEUE_NOTIFY, interval=DIGEST_CHECK_SECONDS, job_timeout=600, result_ttl=600)
