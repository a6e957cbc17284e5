"""The Gmail mailbox harness: one fake Google host (OAuth, Gmail, Calendar), the real connector.

The connector's credentials are what activation stores after consent: a refresh token the fake
OAuth server issued for the seeded account (``FakeGoogleState.grant_offline``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from backend.config import Settings
from backend.connectors import MailboxContext, MailboxSecrets, open_mailbox
from backend.connectors.google import REFRESH_SECRET
from backend.connectors.mailbox import Mailbox
from sandbox.gmail import serve_google
from sandbox.harness.graph import DictSecretStore
from sandbox.tls import CertPair

ADDRESS = "rep@northwind-mail.example"
ALIASES = frozenset({"r.ep@northwind-mail.example", "sales@northwind-mail.example"})
LABELS = {"inbox": ["INBOX", "UNREAD"], "sent": ["SENT"]}


class GmailHarness:
    """A fake Google Workspace account with one seeded mailbox, and the real Gmail connector."""

    provider = "google"
    address = ADDRESS
    aliases = ALIASES

    def __init__(self, cert: CertPair, ca_path: str, *, max_wait: int = 5) -> None:
        self.google, self.gmail, self.calendar, self.server = serve_google(cert)
        self.ca_path = ca_path
        self.gmail.pubsub.ca_path = ca_path  # pushes reach the app over https with the test CA
        self.max_wait = max_wait
        self.user = self.google.add_user(ADDRESS, aliases=sorted(ALIASES), display_name="Rep")
        self.gmail.mailbox(ADDRESS)
        self.calendar.calendar(ADDRESS)
        self.settings = Settings.load({"SIDEBAR_ENV": "development", **self.settings_overrides()})
        self.store = DictSecretStore()
        self.mailbox_id = f"mbx-gmail-{uuid.uuid4().hex[:12]}"
        self.store.put(MailboxSecrets.KIND, self.mailbox_id, REFRESH_SECRET, self.google.grant_offline(ADDRESS))

    # --- the MailboxHarness protocol --------------------------------------------------------------

    def settings_overrides(self) -> dict[str, Any]:
        """Settings that point the app at this fake Google."""
        return {
            "GOOGLE_CLIENT_ID": self.google.client_id,
            "GOOGLE_CLIENT_SECRET": self.google.client_secret,
            "GOOGLE_AUTH_URL": f"{self.server.url}/o/oauth2/v2/auth",
            "GOOGLE_TOKEN_URL": f"{self.server.url}/token",
            "GOOGLE_REVOKE_URL": f"{self.server.url}/revoke",
            "GMAIL_API_URL": self.server.url,
            "GOOGLE_CALENDAR_API_URL": f"{self.server.url}/calendar/v3",
            "OUTBOUND_CA_BUNDLE": self.ca_path,
            "GOOGLE_MAX_WAIT_SECONDS": self.max_wait,
            "GOOGLE_CERTS_URL": f"{self.server.url}/oauth2/v3/certs",
        }

    def connection(self) -> dict[str, Any]:
        """Non-secret connection details as activation stores them."""
        return {"scopes": sorted(self.google.refresh_tokens[self._refresh()].scopes), "via": "consent"}

    def _refresh(self) -> str:
        return self.store.get(MailboxSecrets.KIND, self.mailbox_id, REFRESH_SECRET) or ""

    def secrets(self) -> dict[str, str]:
        """The mailbox's secrets (the refresh token)."""
        return {name: value for (kind, owner, name), value in self.store.values.items()
                if kind == MailboxSecrets.KIND and owner == self.mailbox_id}

    def renewed_secrets(self) -> dict[str, str]:
        """A new refresh token, as reconnecting (consent again) gives."""
        token = self.google.grant_offline(ADDRESS)
        self.store.put(MailboxSecrets.KIND, self.mailbox_id, REFRESH_SECRET, token)
        return {REFRESH_SECRET: token}

    def connector(self) -> Mailbox:
        """The real connector, through the provider map."""
        ctx = MailboxContext(settings=self.settings, mailbox_id=self.mailbox_id, address=ADDRESS,
                             connection={"via": "consent"}, secrets=MailboxSecrets(self.store, self.mailbox_id))
        return open_mailbox(self.provider, ctx)

    def add_email(self, folder: str, *, subject: str, sender: str, to: list[str], cc: list[str] | None = None,
                  body: str = "", message_id: str | None = None, when: datetime | None = None,
                  sensitivity: str = "normal") -> str:
        """Put an email in "inbox" or "sent"."""
        return self.gmail.add_message(ADDRESS, LABELS[folder], subject=subject, sender=sender, to=to, cc=cc,
                                      body=body, message_id=message_id, when=when, sensitivity=sensitivity)

    def delete_email(self, remote_id: str) -> None:
        """Remove an email."""
        self.gmail.delete_message(remote_id)

    def add_event(self, *, subject: str, start: datetime, end: datetime, organizer: str, attendees: list[str],
                  uid: str | None = None, body: str = "", sensitivity: str = "normal") -> str:
        """Put an event in the calendar."""
        return self.calendar.add_event(ADDRESS, subject=subject, start=start, end=end, organizer=organizer,
                                       attendees=attendees, uid=uid, body=body, sensitivity=sensitivity)

    def update_event(self, remote_id: str, **changes: Any) -> None:
        """Change an event."""
        self.calendar.update_event(remote_id, **changes)

    def cancel_event(self, remote_id: str) -> None:
        """Cancel a meeting."""
        self.calendar.cancel_event(remote_id)

    def delete_event(self, remote_id: str) -> None:
        """Remove an event."""
        self.calendar.delete_event(remote_id)

    def request_count(self) -> int:
        """Gmail and Calendar requests, counted as Google counts them: each batch part is one."""
        total = 0
        for call in self.server.recorder.calls:
            if call.path == "/batch/gmail/v1":
                total += call.body.count(b"Content-Type: application/http")
            elif call.path.startswith(("/gmail/", "/calendar/")):
                total += 1
        return total

    def quota_units(self) -> int:
        """Gmail and Calendar quota units the fake counted for this mailbox."""
        return self.gmail.units(ADDRESS)

    def revoke_credentials(self) -> None:
        """Revoke the account's tokens (invalid_grant from now on)."""
        self.google.revoke_user_tokens(ADDRESS)

    def inject_failure(self, kind: str, times: int = 1, retry_after: float = 1.0) -> None:
        """Fail the next ``times`` requests: "throttle" (429 + Retry-After) or "unavailable" (500)."""
        if kind == "throttle":
            self.gmail.faults.inject("429", times, retry_after=max(retry_after, self.max_wait + 1))
        elif kind == "unavailable":
            self.gmail.faults.inject("500", times)
        else:
            raise ValueError(kind)

    def expire_cursors(self) -> None:
        """Stale history ids (404) and expired sync tokens (410)."""
        self.gmail.expire_history(ADDRESS)
        self.calendar.expire_sync_tokens(ADDRESS)

    def close(self) -> None:
        """Stop the fake."""
        self.gmail.pubsub.close()
        self.server.stop()
