"""The one email of an org connection incident: to the org's admin address, never one per person."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from rq import Retry
from rq.exceptions import DuplicateJobError

from backend.config import Settings
from backend.extensions import QUEUE_NOTIFY, services
from backend.jobs.context import worker_app
from backend.jobs.notify import send_mail
from backend.store.org_access import OrgAccess

log = logging.getLogger(__name__)


# Per provider: what the org's access is, and how the administrator fixes it (in the console).
_WORDING = {
    "microsoft": ("the Microsoft 365 app-only access your tenant ({access.microsoft_tenant}) granted",
                  "a Microsoft 365 administrator grants admin consent again in the Sidebar Sync console "
                  "(Mailbox access > Microsoft 365):"),
    "exchange": ("the on-premises Exchange service account ({access.exchange_login})",
                 "enter the service account's new password in the Sidebar Sync console and press Test "
                 "(Mailbox access > On-premises Exchange):"),
    "google": ("the Google Workspace service account ({access.google_client_email}) and its domain-wide "
               "delegation",
               "upload a new JSON key of the service account, or have a Workspace administrator authorise client id "
               "{access.google_client_id} again under Security > API controls > Domain-wide delegation, then press "
               "Test in the Sidebar Sync console (Mailbox access > Google Workspace):"),
}
_LABELS = {"microsoft": "Microsoft 365", "exchange": "on-premises Exchange", "google": "Google Workspace"}


def org_broken_message(settings: Settings, access: OrgAccess, provider: str, to: str) -> EmailMessage:
    """The "organisation connection broken" email (no secrets, no mail content)."""
    details = access.broken.get(provider, {})
    what, fix = _WORDING.get(provider, _WORDING["microsoft"])
    text = (
        "Hello,\n\n"
        f"Sidebar Sync can no longer read your organisation's mailboxes with {what.format(access=access)}: "
        f"{details.get('message', 'access refused')}.\n\n"
        "Sync is paused for every person activated through it; it does not count against their own sign-in, "
        "and nothing is lost.\n\n"
        f"How to fix it: {fix.format(access=access)} {settings.PUBLIC_BASE_URL}/admin#access\n"
        "Everyone resumes where they stopped as soon as the connection works.\n\n"
        "- Sidebar Sync\n"
    )
    message = EmailMessage()
    label = _LABELS.get(provider, "Microsoft 365")
    message["Subject"] = f"Sidebar Sync: your organisation's {label} connection stopped working"
    message["From"] = settings.MAIL_FROM
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=(settings.MAIL_FROM.rpartition("@")[2] or None))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message


def send_org_notice(org_id: str, provider: str, incident: str) -> bool:
    """RQ job: email the org's admin address about a broken org connection (once per incident)."""
    with worker_app().app_context():
        svc = services()
        access = svc.store.org_access.get(org_id)
        if (access.broken.get(provider) or {}).get("incident") != incident:
            return False  # fixed meanwhile, or another incident
        admin = svc.store.orgs.get(org_id).admin_email
        if not admin or not svc.settings.SMTP_URL:
            log.warning("org connection broken but no admin address or SMTP_URL; no email org=%s", org_id)
            return False
        send_mail(svc.settings, org_broken_message(svc.settings, access, provider, admin))
        log.info("org connection notice sent org=%s incident=%s", org_id, incident)
        return True


def enqueue_org_notice(org_id: str, provider: str, incident: str) -> bool:
    """Queue the incident's one email (a unique job id per incident)."""
    try:
        services().queue(QUEUE_NOTIFY).enqueue(
            send_org_notice, args=(org_id, provider, incident), job_id=f"orgnotify-{org_id}-{incident}",
            unique=True, job_timeout=120, result_ttl=7 * 24 * 3600, failure_ttl=7 * 24 * 3600,
            retry=Retry(max=5, interval=[60, 300, 900, 3600, 3600]), description=f"org notice {org_id}")
        return True
    except DuplicateJobError:
        return False
