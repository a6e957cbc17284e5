"""The contract between connector tests and the fakes: one harness per mailbox provider.

A harness owns a running protocol-level fake (EWS, Graph, ...) seeded with one mailbox, builds the
*real* connector against it through configuration only, and lets tests change the mailbox on the
server side. The shared protocol checks (``tests/connectors/test_mailbox_protocol.py``) and the sync engine's
end-to-end tests run against every harness, so every connector honours the same behaviour.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from backend.connectors.mailbox import Mailbox


class MailboxHarness(Protocol):
    """A fake mail server with one seeded mailbox, and the real connector pointed at it."""

    provider: str  # "exchange", "microsoft", ...
    address: str  # the mailbox's primary SMTP address
    aliases: frozenset[str]  # other addresses of the same mailbox

    def settings_overrides(self) -> dict[str, Any]:
        """Settings (environment names) the app needs to reach this fake (URLs, allowed hosts...)."""
        ...

    def connection(self) -> dict[str, Any]:
        """Non-secret connection details as activation would store them."""
        ...

    def secrets(self) -> dict[str, str]:
        """Secrets as activation would store them (password, token cache ...)."""
        ...

    def connector(self) -> Mailbox:
        """The real connector, built through the provider map from settings, connection and secrets."""
        ...

    def add_email(
        self,
        folder: str,
        *,
        subject: str,
        sender: str,
        to: list[str],
        cc: list[str] | None = None,
        body: str = "",
        message_id: str | None = None,
        when: datetime | None = None,
        sensitivity: str = "normal",
    ) -> str:
        """Put an email in "inbox" or "sent"; returns its server id."""
        ...

    def delete_email(self, remote_id: str) -> None:
        """Remove an email from its folder."""
        ...

    def add_event(
        self,
        *,
        subject: str,
        start: datetime,
        end: datetime,
        organizer: str,
        attendees: list[str],
        uid: str | None = None,
        body: str = "",
        sensitivity: str = "normal",
    ) -> str:
        """Put an event in the calendar; returns its server id."""
        ...

    def update_event(self, remote_id: str, **changes: Any) -> None:
        """Change an event (subject, start, end, attendees ...)."""
        ...

    def cancel_event(self, remote_id: str) -> None:
        """Cancel a meeting (it stays, marked cancelled)."""
        ...

    def delete_event(self, remote_id: str) -> None:
        """Remove an event from the calendar."""
        ...

    def request_count(self) -> int:
        """Requests the fake has received so far."""
        ...

    def revoke_credentials(self) -> None:
        """Make the server refuse the stored credentials from now on (-> AuthRevoked)."""
        ...

    def inject_failure(self, kind: str, times: int = 1, retry_after: float = 1.0) -> None:
        """Fail the next ``times`` requests: kind "throttle" (-> Throttled) or "unavailable"."""
        ...

    def expire_cursors(self) -> None:
        """Make every cursor handed out so far invalid (-> a bounded resync, no duplicates)."""
        ...

    def close(self) -> None:
        """Stop the fake."""
        ...
