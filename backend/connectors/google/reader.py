"""Gmail and Google Workspace mailboxes: the Mailbox protocol over the Gmail and Calendar APIs.

Inbox and Sent are read per label (:mod:`.mail`: a backfill, then ``history.list``), the calendar
through ``events.list`` with sync tokens (:mod:`.calendar`). The profile's ``historyId`` is read
once per run, before any listing. Google's limits are kept by :mod:`.http` and :mod:`.gate`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from backend.config import Settings
from backend.connectors.common import TokenSource
from backend.connectors.google.calendar import CalendarRead
from backend.connectors.google.delegation import SECRET_KEY, DelegatedTokens, ServiceAccountKey, parse_key
from backend.connectors.google.http import GoogleClient
from backend.connectors.google.items import identity_from, parse_message
from backend.connectors.google.mail import GET_UNITS, MESSAGE_FIELDS, USER_PATH, FolderRead
from backend.connectors.google.tokens import MailboxTokens, StaticToken
from backend.connectors.mailbox import FOLDERS, ChangePage, EmailItem, EventItem, Folder, MailboxIdentity, SyncWindow
from backend.errors import AuthRevoked, SetupFailed, Unavailable
from backend.net.outbound import make_session
from backend.security.crypto import fingerprint

PROFILE_UNITS = 1
SEND_AS_UNITS = 1


class GmailMailbox:
    """The Mailbox protocol over the Gmail and Google Calendar APIs for one account."""

    provider: ClassVar[str] = "google"

    def __init__(self, settings: Settings, tokens: TokenSource, gate_key: str, session: requests.Session) -> None:
        self.settings = settings
        self.client = GoogleClient(settings, tokens, gate_key, session)
        self._history_id = ""

    @property
    def calls(self) -> int:
        """Gmail and Calendar requests made so far (each batch part counts)."""
        return self.client.calls

    @property
    def quota_units(self) -> int:
        """Gmail quota units spent so far."""
        return self.client.units

    def close(self) -> None:
        """Release connections."""
        self.client.close()

    def _profile(self) -> dict[str, Any]:
        resp = self.client.get(f"{self.client.gmail_root}{USER_PATH}/profile", units=PROFILE_UNITS)
        if not isinstance(resp.body, dict):
            raise Unavailable("Gmail returned an unexpected profile.")
        return resp.body

    def identity(self) -> MailboxIdentity:
        """The address (``users.getProfile``) and the send-as aliases (``users.settings.sendAs.list``)."""
        profile = self._profile()
        send_as = self.client.get(f"{self.client.gmail_root}{USER_PATH}/settings/sendAs", units=SEND_AS_UNITS)
        return identity_from(profile, send_as.body if isinstance(send_as.body, dict) else {})

    def start_history(self) -> str:
        """The mailbox's ``historyId`` now (read once a run, before the first listing)."""
        if not self._history_id:
            value = str(self._profile().get("historyId") or "")
            if not value.isdigit():
                raise Unavailable("Gmail returned a profile without a history id.")
            self._history_id = value
        return self._history_id

    def fetch_item(self, kind: str, item_id: str) -> EmailItem | EventItem | None:
        """One message by its Gmail id (``messages.get``), or None; a single meeting is not read this way yet."""
        if kind == "event":
            return None
        resp = self.client.get(f"{self.client.gmail_root}{USER_PATH}/messages/{quote(item_id, safe='')}",
                               [("format", "full"), ("fields", MESSAGE_FIELDS)], GET_UNITS, accept=(400, 404))
        body = resp.body if isinstance(resp.body, dict) else {}
        if resp.status in (400, 404) or not body.get("id"):
            return None
        labels = body.get("labelIds") or []
        return parse_message(body, Folder.SENT if "SENT" in labels else Folder.INBOX)

    def read_changes(
        self, cursors: Mapping[str, str], window: SyncWindow, folders: tuple[Folder, ...] = tuple(Folder)
    ) -> Iterator[ChangePage]:
        """Yield pages of changes per folder since ``cursors`` (a missing cursor reads ``window``)."""
        for folder in tuple(Folder(f) for f in (folders or FOLDERS)):
            raw = cursors.get(folder.value, "")
            if folder is Folder.CALENDAR:
                yield from CalendarRead(self.client, window).pages(raw)
            else:
                yield from FolderRead(self.client, folder, window, self.start_history).pages(raw)


def google_identity(settings: Settings, access_token: str, session: requests.Session | None = None) -> MailboxIdentity:
    """Who an access token's mailbox is (the consent dialog uses this before storing anything)."""
    own = session is None
    mailbox = GmailMailbox(settings, StaticToken(access_token), f"token:{fingerprint(access_token)}",
                           session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS))
    try:
        return mailbox.identity()
    finally:
        if own:
            mailbox.close()


def open_mailbox(ctx: Any) -> GmailMailbox:
    """The Gmail connector for a sync mailbox (``ctx`` is a :class:`backend.connectors.MailboxContext`)."""
    settings: Settings = ctx.settings
    session = ctx.http_session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)
    tokens: TokenSource
    if (ctx.connection or {}).get("delegated"):
        # Mass activation: the org's service account signs in as the person (domain-wide delegation).
        tokens = DelegatedTokens(settings, _org_key(ctx), ctx.address, session)
    else:
        tokens = MailboxTokens(settings, ctx.secrets, session)
    return GmailMailbox(settings, tokens, ctx.mailbox_id, session)


def _org_key(ctx: Any) -> ServiceAccountKey:
    """The org's service account key for a delegated mailbox (AuthRevoked when none is kept)."""
    raw = ctx.org_secret(SECRET_KEY) if ctx.org_secret is not None else None
    if not raw:
        raise AuthRevoked("No Google Workspace service account key is saved for this organisation.")
    try:
        return parse_key(raw)
    except SetupFailed as exc:
        raise AuthRevoked(exc.message) from None
