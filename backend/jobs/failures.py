"""What a failed run does beyond RQ's retry: auth failures counted (sync disabled and the person told
after MAX_AUTH_FAILURES), task pane sessions ended when Salesforce refuses the login, the one email
of an incident, and an org's own access failing (handled once for the org, not per person).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rq import Retry
from rq.exceptions import DuplicateJobError

from backend.errors import AuthRevoked
from backend.extensions import QUEUE_NOTIFY, services
from backend.jobs.notify import AUTH_FAILURE_CODES, incident_of, send_disabled_notice
from backend.observability.logs import mailbox_hash
from backend.store.mailboxes import InvalidTransition

log = logging.getLogger(__name__)


def record_auth_failure(mailbox_id: str, error: AuthRevoked, source: str) -> int:
    """Count a run refused on authentication; disable sync and notify after MAX_AUTH_FAILURES in a row.

    Returns the streak, or 0 when the mailbox had stopped meanwhile (disabled by an administrator or
    the org's access, deactivated): its reason stays and nobody is emailed about this one.
    """
    svc = services()
    store, settings = svc.store, svc.settings
    code = AUTH_FAILURE_CODES[source == "salesforce"]
    where = "your mail server" if source == "mailbox" else "Salesforce"

    def details(count: int, previous: dict[str, Any]) -> dict[str, Any]:
        # "since" is when the failures began, not when we gave up.
        first = float(previous.get("first_failed_at") or 0) if previous.get("code") == code else 0.0
        first = first or time.time()
        message = (f"{where.capitalize()} refused the saved sign-in {count} time(s) in a row "
                   f"({error.message})")
        return {"code": code, "message": message, "since": first, "first_failed_at": first, "failures": count,
                "source": source}

    count = store.mailboxes.add_auth_failure(mailbox_id, details)
    if count < settings.MAX_AUTH_FAILURES:
        return count
    mailbox = store.mailboxes.get(mailbox_id)
    if mailbox is None or not mailbox.error or mailbox.error.get("code") != code:
        return count
    streak = dict(mailbox.error)
    try:
        store.mailboxes.disable(mailbox_id, code, str(streak["message"]), streak)
    except InvalidTransition:
        # Paused or already disabled meanwhile: nothing more to do, and no second email.
        return count
    store.schedule.remove(mailbox_id)
    incident = incident_of(streak)
    log.warning("sync disabled after %d auth failures mid=%s source=%s", count, mailbox_id, source)
    enqueue_notice(mailbox_id, incident)
    return count


def end_sessions_after_salesforce_refusal(mailbox_id: str, error: AuthRevoked) -> None:
    """Salesforce refused the user's login: mark it revoked and end every task pane session now.

    The web checks on requests too, but only every ``SALESFORCE_CHECK_SECONDS``; a stolen bearer
    token must not keep working until then. The stored tokens are kept (they are refused anyway).
    """
    store = services().store
    mailbox = store.mailboxes.get(mailbox_id)
    if mailbox is None:
        return
    store.users.update(mailbox.user_id, salesforce_status="revoked",
                       salesforce_status_reason=f"Salesforce no longer accepts your login ({error.message})")
    ended = store.sessions.revoke_all(mailbox.user_id)
    store.consoles.end_all(mailbox.user_id)  # the admin console's sessions too
    log.warning("salesforce refused the login in a run: sessions ended uid=%s count=%d", mailbox.user_id, ended)


def enqueue_notice(mailbox_id: str, incident: str) -> bool:
    """Queue the one email of an incident (a unique job id per incident)."""
    try:
        services().queue(QUEUE_NOTIFY).enqueue(
            send_disabled_notice,
            args=(mailbox_id, incident),
            job_id=f"notify-{mailbox_id}-{incident}",
            unique=True,
            job_timeout=120,
            result_ttl=7 * 24 * 3600,
            failure_ttl=7 * 24 * 3600,
            retry=Retry(max=5, interval=[60, 300, 900, 3600, 3600]),
            description=f"notify {incident} mailbox={mailbox_hash(mailbox_id)}",
        )
        return True
    except DuplicateJobError:
        return False


def org_access_failed(mailbox_id: str, error: Exception) -> bool:
    """For a mailbox read with its org's access: whether the org's access itself failed (then handled once)."""
    from backend.jobs.org_notify import enqueue_org_notice
    from backend.sync.org_access import break_org
    from backend.sync.org_providers import ORG_PROVIDERS, served_by_org_access, uses_org_access

    svc = services()
    mailbox = svc.store.mailboxes.get(mailbox_id)
    if mailbox is None or not uses_org_access(mailbox) or getattr(error, "source", "mailbox") != "mailbox":
        return False
    provider = ORG_PROVIDERS[mailbox.provider]
    access = svc.store.org_access.get(mailbox.org_id)
    if not served_by_org_access(provider, access, mailbox):
        # Not the org's connected access (none connected, or another tenant's consent): the org's
        # check would test something else and "break" people who never used it.
        return False
    reason = provider.refused(svc.settings, svc.clients, svc.store, access)
    if reason is None:
        return False  # the org's access works: this mailbox's own problem
    incident = break_org(svc.store, mailbox, reason)
    if incident is not None:
        enqueue_org_notice(mailbox.org_id, provider.name, incident)
    return True
