"""The Microsoft 365 (Graph) mailbox harness: fake identity platform + fake Graph, the real connector.

The connector's credentials are obtained the way production obtains them: the seeded user has
consented, and the harness trades a Nested App Authentication token on-behalf-of for an msal token
cache (``MicrosoftAuth.on_behalf_of``), which is what activation stores.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from backend.config import Settings
from backend.connectors import MailboxContext, MailboxSecrets, open_mailbox
from backend.connectors.graph import CACHE_SECRET, MicrosoftAuth
from backend.connectors.mailbox import Mailbox
from sandbox import microsoft as fake_ms
from sandbox.graph import FakeGraphState, recorded_app
from sandbox.keepalive import KeepAliveFakeServer
from sandbox.server import FakeServer
from sandbox.tls import CertPair

ADDRESS = "rep@contoso.example"
ALIASES = frozenset({"r.ep@contoso.example", "sales@contoso.example"})


class DictSecretStore:
    """An in-memory stand-in for the encrypted secret store (``get/put/delete(kind, owner, name)``)."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], str] = {}
        self.puts = 0

    def get(self, kind: str, owner: str, name: str) -> str | None:
        """A stored value, or None."""
        return self.values.get((kind, owner, name))

    def put(self, kind: str, owner: str, name: str, value: str) -> None:
        """Store a value."""
        self.puts += 1
        self.values[(kind, owner, name)] = value

    def delete(self, kind: str, owner: str, name: str | None = None) -> int:
        """Delete one value or all of an owner's."""
        doomed = [k for k in self.values if k[:2] == (kind, owner) and (name is None or k[2] == name)]
        for key in doomed:
            del self.values[key]
        return len(doomed)


class GraphHarness:
    """A fake Microsoft 365 tenant with one seeded mailbox, and the real Graph connector."""

    provider = "microsoft"
    address = ADDRESS
    aliases = ALIASES

    def __init__(self, cert: CertPair, ca_path: str, *, app_only: bool = False, max_wait: int = 5,
                 page_size: int = 50) -> None:
        self.ms = fake_ms.FakeMicrosoftState()
        self.ms_server = FakeServer(fake_ms.create_app(self.ms), cert).start()
        self.ms.base_url = self.ms_server.url
        self.graph = FakeGraphState(self.ms)
        # Keep-alive, as Graph: a connection serves many requests (TLS once per connection).
        self.graph_server = KeepAliveFakeServer(recorded_app(self.graph), cert).start()
        self.graph.base_url = self.graph_server.url
        # Change notifications reach the app over https with the test CA, as Graph would.
        self.graph.push.ca_path = ca_path
        self.ca_path = ca_path
        self.max_wait = max_wait
        self.page_size = page_size
        self.user = self.ms.add_user(ADDRESS, aliases=sorted(ALIASES), consented=True, is_admin=True)
        self.graph.mailbox(ADDRESS)
        self.settings = Settings.load({"SIDEBAR_ENV": "development", **self.settings_overrides()})
        self.store = DictSecretStore()
        # Unique per harness: connectors of one mailbox share a process-wide gate (in flight, Retry-After).
        self.mailbox_id = f"mbx-graph-{uuid.uuid4().hex[:12]}"
        self.app_only = app_only
        if app_only:
            self.ms.tenant(self.user.tid).admin_consented = True
            self._connection: dict[str, Any] = {"app_only": True, "tenant_id": self.user.tid,
                                                "user_id": self.user.oid}
        else:
            grant = MicrosoftAuth(self.settings).on_behalf_of(self.ms.naa_token(ADDRESS), self.user.tid)
            self.store.put(MailboxSecrets.KIND, self.mailbox_id, CACHE_SECRET, grant.cache)
            self._connection = grant.connection("on_behalf_of")

    # --- the MailboxHarness protocol --------------------------------------------------------------

    def settings_overrides(self) -> dict[str, Any]:
        """Settings that point the app at these fakes."""
        return {
            "MS_CLIENT_ID": self.ms.client_id,
            "MS_CLIENT_SECRET": self.ms.client_secret,
            "MS_AUTHORITY": f"{self.ms_server.url}/organizations",
            "GRAPH_URL": self.graph_server.url,
            "OUTBOUND_CA_BUNDLE": self.ca_path,
            "GRAPH_MAX_WAIT_SECONDS": self.max_wait,
            "GRAPH_PAGE_SIZE": self.page_size,
        }

    def connection(self) -> dict[str, Any]:
        """Non-secret connection details as activation stores them."""
        return dict(self._connection)

    def secrets(self) -> dict[str, str]:
        """The mailbox's secrets (the msal cache), as the connector left them."""
        return {name: value for (kind, owner, name), value in self.store.values.items()
                if kind == MailboxSecrets.KIND and owner == self.mailbox_id}

    def connector(self) -> Mailbox:
        """The real connector, through the provider map."""
        ctx = MailboxContext(settings=self.settings, mailbox_id=self.mailbox_id, address=ADDRESS,
                             connection=self.connection(), secrets=MailboxSecrets(self.store, self.mailbox_id))
        return open_mailbox(self.provider, ctx)

    def add_email(self, folder: str, *, subject: str, sender: str, to: list[str], cc: list[str] | None = None,
                  body: str = "", message_id: str | None = None, when: datetime | None = None,
                  sensitivity: str = "normal") -> str:
        """Put an email in "inbox" or "sent"."""
        return self.graph.add_message(ADDRESS, folder, subject=subject, sender=sender, to=to, cc=cc, body=body,
                                      message_id=message_id, when=when, sensitivity=sensitivity)

    def delete_email(self, remote_id: str) -> None:
        """Remove an email."""
        self.graph.delete_item(remote_id)

    def add_event(self, *, subject: str, start: datetime, end: datetime, organizer: str, attendees: list[str],
                  uid: str | None = None, body: str = "", sensitivity: str = "normal") -> str:
        """Put an event in the calendar."""
        return self.graph.add_event(ADDRESS, subject=subject, start=start, end=end, organizer=organizer,
                                    attendees=attendees, uid=uid, body=body, sensitivity=sensitivity)

    def update_event(self, remote_id: str, **changes: Any) -> None:
        """Change an event."""
        self.graph.update_item(remote_id, **changes)

    def cancel_event(self, remote_id: str) -> None:
        """Cancel a meeting."""
        self.graph.cancel_event(remote_id)

    def delete_event(self, remote_id: str) -> None:
        """Remove an event."""
        self.graph.delete_item(remote_id)

    def request_count(self) -> int:
        """Requests Graph received, counted as Graph counts them: each ``$batch`` sub-request is one."""
        total = 0
        for call in self.graph_server.recorder.calls:
            if call.path.endswith("/$batch"):
                total += len(json.loads(call.body or b"{}").get("requests") or [])
            else:
                total += 1
        return total

    def revoke_credentials(self) -> None:
        """Revoke the user's refresh and access tokens (and, app-only, the tenant's consent)."""
        self.ms.revoke_refresh_tokens(ADDRESS)
        if self.app_only:
            self.ms.tenant(self.user.tid).admin_consented = False
            self.ms.expire_access_tokens()

    def inject_failure(self, kind: str, times: int = 1, retry_after: float = 1.0) -> None:
        """Fail the next ``times`` requests: "throttle" (429 + Retry-After) or "unavailable" (500)."""
        if kind == "throttle":
            # Longer than the connector waits within a run, so it gives up with Throttled.
            self.graph.inject("429", times, retry_after=max(retry_after, self.max_wait + 1))
        elif kind == "unavailable":
            self.graph.inject("500", times)
        else:
            raise ValueError(kind)

    def expire_cursors(self) -> None:
        """Every delta/skip token handed out so far answers 410."""
        self.graph.expire_cursors(ADDRESS)

    def close(self) -> None:
        """Stop the fakes."""
        self.graph.push.close()
        self.graph_server.stop()
        self.ms_server.stop()
