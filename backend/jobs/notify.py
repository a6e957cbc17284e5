"""Notification emails: "sync stopped" to the user (and the org's admin address when set).

Sent through ``SMTP_URL`` (``smtp://[user:pass@]host[:port]`` with STARTTLS when the server offers
it, or ``smtps://...`` for TLS from the start) from ``MAIL_FROM``. The email says what stopped,
since when, and how to re-enable it, with a link that opens the add-in's Sync settings. It never
holds a secret or any mail content. One email per incident: the job id is unique per incident and
the mailbox remembers the incident it was notified about.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from backend.config import Settings
from backend.extensions import services
from backend.jobs.context import worker_app
from backend.net.outbound import trust_bundle
from backend.store.mailboxes import SyncMailbox, SyncState
from backend.store.users import User

log = logging.getLogger(__name__)

SETTINGS_FRAGMENT = "#sync-settings"
PROVIDER_NAMES = {"exchange": "Exchange", "microsoft": "Microsoft 365", "google": "Gmail"}
# The errors of a person's own auth failure streak (the mail server's, Salesforce's): the ones this email is about.
AUTH_FAILURE_CODES = ("mailbox_auth_failed", "salesforce_auth_failed")


def incident_of(error: dict[str, Any]) -> str:
    """The incident an auth failure streak's error belongs to: when its first failure was (whole seconds)."""
    return f"{int(float(error.get('first_failed_at') or 0))}"


def is_current_incident(mailbox: SyncMailbox, incident: str) -> bool:
    """Whether ``mailbox`` is still disabled by the auth failure streak ``incident`` (no administrator's hold)."""
    error = mailbox.error or {}
    return (mailbox.state is SyncState.DISABLED_ERROR and not mailbox.admin_hold
            and error.get("code") in AUTH_FAILURE_CODES and incident_of(error) == incident)


class MailNotConfigured(Exception):
    """SMTP_URL is not set: notifications cannot go out."""


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to send mail."""

    host: str
    port: int
    tls: bool  # TLS from the first byte (smtps)
    username: str
    password: str


def smtp_target(url: str) -> SmtpTarget:
    """Parse ``SMTP_URL``."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailNotConfigured("SMTP_URL must look like smtp://host:port or smtps://user:pass@host:port")
    tls = parts.scheme == "smtps"
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if tls else 25),
        tls=tls,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
    )


def settings_link(settings: Settings) -> str:
    """The link that opens the add-in's Sync settings."""
    return f"{settings.PUBLIC_BASE_URL}/taskpane.html{SETTINGS_FRAGMENT}"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%d %B %Y, %H:%M UTC")


def disabled_message(settings: Settings, mailbox: SyncMailbox, user: User, admin: str) -> EmailMessage:
    """The "sync stopped" email (no secrets, no mail content)."""
    error = mailbox.error or {}
    since = float(error.get("first_failed_at") or error.get("since") or mailbox.updated_at)
    source = error.get("source") or "mailbox"
    provider = PROVIDER_NAMES.get(mailbox.provider, "your mail server")
    if source == "salesforce":
        what = "Salesforce no longer accepts your login"
        fix = ("Open Sidebar Sync in Outlook, log in to Salesforce again, then open ☰ > Sync settings "
               "and choose Reconnect.")
    else:
        what = f"{provider} no longer accepts the saved sign-in for {mailbox.address}"
        fix = ("Open Sidebar Sync in Outlook, choose ☰ > Sync settings, and choose Reconnect "
               "(with your new password, if it changed).")
    name = user.display_name or "there"
    failures = int(error.get("failures") or settings.MAX_AUTH_FAILURES)
    link = settings_link(settings)
    text = (
        f"Hello {name},\n\n"
        f"Sidebar Sync stopped logging the email and meetings of {mailbox.address} in Salesforce.\n\n"
        f"What happened: {what}. Sync tried {failures} times in a row since {_when(since)} and has "
        f"stopped until you reconnect.\n\n"
        f"How to turn it back on: {fix}\n"
        f"Sync settings: {link}\n\n"
        "Nothing is lost: when you reconnect, sync continues where it stopped.\n\n"
        "- Sidebar Sync\n"
    )
    message = EmailMessage()
    message["Subject"] = "Sidebar Sync stopped logging your email in Salesforce"
    message["From"] = settings.MAIL_FROM
    recipient = user.email or mailbox.address
    message["To"] = recipient
    if admin and admin.lower() != recipient.lower():
        message["Cc"] = admin
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=(settings.MAIL_FROM.rpartition("@")[2] or None))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    return message


def send_mail(settings: Settings, message: EmailMessage) -> None:
    """Send one message through SMTP_URL (errors propagate: the job retries)."""
    if not settings.SMTP_URL:
        raise MailNotConfigured("SMTP_URL is not set")
    target = smtp_target(settings.SMTP_URL)
    bundle = trust_bundle(settings.OUTBOUND_CA_BUNDLE)
    context = ssl.create_default_context(cafile=bundle if isinstance(bundle, str) else None)
    timeout = float(settings.OUTBOUND_TIMEOUT_SECONDS)
    client: smtplib.SMTP
    if target.tls:
        client = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(target.host, target.port, timeout=timeout)
    with client:
        client.ehlo()
        if not target.tls and client.has_extn("starttls"):
            client.starttls(context=context)
            client.ehlo()
        if target.username:
            client.login(target.username, target.password)
        client.send_message(message)


def send_disabled_notice(mailbox_id: str, incident: str) -> bool:
    """RQ job: email the user (and the org admin) that sync was disabled; once per incident."""
    with worker_app().app_context():
        svc = services()
        store, settings = svc.store, svc.settings
        mailbox = store.mailboxes.get(mailbox_id)
        if mailbox is None or not is_current_incident(mailbox, incident):
            # A retry after the person reconnected (and maybe a new streak, its own email) or the
            # administrator disabled it: this incident is over and its reason would be wrong.
            return False
        if mailbox.notified_incident == incident:
            return False
        user = store.users.get(mailbox.user_id)
        if user is None:
            return False
        if not settings.SMTP_URL:
            log.warning("sync disabled but SMTP_URL is not set; no email sent mid=%s", mailbox_id)
            return False
        admin = store.orgs.get(mailbox.org_id).admin_email
        send_mail(settings, disabled_message(settings, mailbox, user, admin))
        store.mailboxes.update(mailbox_id, notified_incident=incident)
        log.info("sync disabled notice sent mid=%s incident=%s admin=%s", mailbox_id, incident, bool(admin))
        return True
