"""The MailboxHarness for on-premises Exchange: the fake EWS server and the real connector.

The connector is built exactly as the sync engine builds it: ``PROVIDERS["exchange"]`` with a
:class:`MailboxContext` of settings (pointing at the fake through ``EWS_ALLOWED_HOSTS`` and
``OUTBOUND_CA_BUNDLE`` only), the connection details activation stores, and the stored password.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backend.config import Settings
from backend.connectors import PROVIDERS, MailboxContext, MailboxSecrets
from backend.connectors.mailbox import Mailbox
from sandbox.ews import EWS_PATH, FakeEwsState, KeepAliveFakeServer, start_fake_ews
from sandbox.tls import CertPair

ADDRESS = "alice@acme.example"
ALIASES = frozenset({"alice.example@acme.example", "a.example@acme.example"})
PASSWORD = "Correct-Horse-42!"
_FOLDERS = {"inbox": "inbox", "sent": "sentitems"}
_SENSITIVITY = {"normal": "Normal", "personal": "Personal", "private": "Private", "confidential": "Confidential"}


class MemorySecretStore:
    """The secret store's get/put, in memory (the harness needs no Redis)."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)

    def get(self, kind: str, owner: str, name: str) -> str | None:
        """A stored secret."""
        return self.values.get(name)

    def put(self, kind: str, owner: str, name: str, value: str) -> None:
        """Replace a secret."""
        self.values[name] = value


class ExchangeHarness:
    """A fake Exchange 2016 server with Alice's mailbox, and the real Exchange connector."""

    provider = "exchange"
    address = ADDRESS
    aliases = ALIASES

    def __init__(self, ca_path: str, cert: CertPair, auth_methods: tuple[str, ...] = ("NTLM", "Basic"),
                 **overrides: Any) -> None:
        self.ca_path = ca_path
        state = FakeEwsState(auth_methods=auth_methods)
        self.state: FakeEwsState
        self.server: KeepAliveFakeServer
        self.state, self.server = start_fake_ews(cert, state)
        self.state.add_user(ADDRESS, PASSWORD, account="alice", display_name="Alice Example", aliases=sorted(ALIASES))
        self.state.add_user("bob@acme.example", "bob-password", account="bob", display_name="Bob Builder")
        self.overrides = overrides
        self.password = PASSWORD
        self._opened: list[Mailbox] = []

    @property
    def ews_url(self) -> str:
        """The fake's EWS endpoint."""
        return f"{self.server.url}{EWS_PATH}"

    def settings_overrides(self) -> dict[str, Any]:
        """Settings that reach the fake: its host allowed, its CA trusted, short timeouts."""
        return {
            "OUTBOUND_CA_BUNDLE": self.ca_path,
            "EWS_ALLOWED_HOSTS": f"127.0.0.1:{self.server.port}",
            "EWS_TIMEOUT_SECONDS": 5,
            "EWS_AUTODISCOVER_URLS": f"{self.server.url}/autodiscover/autodiscover.xml",
            **self.overrides,
        }

    def settings(self) -> Settings:
        """Settings for a connector outside an app."""
        return Settings.load({"SIDEBAR_ENV": "development", **self.settings_overrides()})

    def connection(self) -> dict[str, Any]:
        """What activation stores for this mailbox."""
        return {"login": ADDRESS, "ews_url": self.ews_url, "auth_type": "NTLM", "version": "15.1.2507.6",
                "autodiscovered": False}

    def secrets(self) -> dict[str, str]:
        """The stored password."""
        return {"exchange_password": self.password}

    def connector(self) -> Mailbox:
        """The connector, through the provider map."""
        ctx = MailboxContext(
            settings=self.settings(),
            mailbox_id="mbx-test",
            address=ADDRESS,
            connection=self.connection(),
            secrets=MailboxSecrets(MemorySecretStore(self.secrets()), "mbx-test"),
        )
        mailbox = PROVIDERS["exchange"](ctx)
        self._opened.append(mailbox)
        return mailbox

    def add_email(self, folder: str, *, subject: str, sender: str, to: list[str], cc: list[str] | None = None,
                  body: str = "", message_id: str | None = None, when: datetime | None = None,
                  sensitivity: str = "normal") -> str:
        """An email in "inbox" or "sent"."""
        return self.state.add_email(ADDRESS, _FOLDERS[folder], subject=subject, sender=sender, to=to, cc=cc,
                                    body=body, message_id=message_id, when=when,
                                    sensitivity=_SENSITIVITY[sensitivity])

    def delete_email(self, remote_id: str) -> None:
        """Remove an email."""
        self.state.delete_item(remote_id)

    def add_event(self, *, subject: str, start: datetime, end: datetime, organizer: str, attendees: list[str],
                  uid: str | None = None, body: str = "", sensitivity: str = "normal") -> str:
        """A meeting in the calendar."""
        return self.state.add_event(ADDRESS, subject=subject, start=start, end=end, organizer=organizer,
                                    attendees=attendees, uid=uid, body=body, sensitivity=_SENSITIVITY[sensitivity])

    def update_event(self, remote_id: str, **changes: Any) -> None:
        """Change a meeting."""
        self.state.update_item(remote_id, **changes)

    def cancel_event(self, remote_id: str) -> None:
        """Cancel a meeting (Exchange keeps it, marked cancelled, subject prefixed)."""
        subject = self.state.items[remote_id].subject
        self.state.update_item(remote_id, is_cancelled=True, subject=f"Canceled: {subject}")

    def delete_event(self, remote_id: str) -> None:
        """Remove a meeting."""
        self.state.delete_item(remote_id)

    def request_count(self) -> int:
        """HTTP requests the fake received."""
        return len(self.server.recorder.calls)

    def revoke_credentials(self) -> None:
        """The password changes on the server."""
        self.state.revoke(ADDRESS)

    def inject_failure(self, kind: str, times: int = 1, retry_after: float = 1.0) -> None:
        """"throttle" (ErrorServerBusy) or "unavailable" (a 502 from the proxy in front), or any fake kind."""
        self.state.inject_failure(kind, times=times, retry_after=retry_after)

    def expire_cursors(self) -> None:
        """Every sync state handed out becomes invalid."""
        self.state.expire_sync_states()

    def close(self) -> None:
        """Close connectors and stop the fake."""
        for mailbox in self._opened:
            mailbox.close()
        self.server.stop()
