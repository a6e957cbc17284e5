"""Graph change notification subscriptions for one mailbox: create, renew, delete.

One subscription per watched resource (Inbox messages, Sent Items messages, calendar events),
``changeType`` created,updated,deleted, with a lifecycle URL so Graph tells us before it stops
(``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``). We ask for a lifetime and keep
the ``expirationDateTime`` Graph answers: the maximum is Graph's to decide, not ours. Creating one
makes Graph POST a ``validationToken`` to the notification URL first; a refused handshake is a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from backend.connectors.graph.http import GraphClient, graph_time
from backend.connectors.graph.reader import GraphMailbox, open_mailbox
from backend.errors import SetupFailed, Unavailable

CHANGE_TYPES = "created,updated,deleted"
# What each subscription watches, below the mailbox's path (``me`` or ``users/{id}``).
RESOURCES = {
    "inbox": "mailFolders('Inbox')/messages",
    "sentitems": "mailFolders('SentItems')/messages",
    "calendar": "events",
}


@dataclass(frozen=True)
class Created:
    """A subscription Graph accepted: its id, resource, and the expiry Graph granted (epoch seconds)."""

    id: str
    kind: str
    resource: str
    expires_at: float


def _expiry(body: Any) -> float:
    """The ``expirationDateTime`` of a subscription answer, as epoch seconds."""
    raw = body.get("expirationDateTime") if isinstance(body, dict) else None
    if not isinstance(raw, str) or not raw:
        raise Unavailable("Microsoft Graph answered a subscription without an expiry.")
    text = raw.replace("Z", "+00:00")
    if "." in text:
        # Graph writes up to 7 fractional digits; Python reads 6.
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Unavailable("Microsoft Graph answered an unreadable subscription expiry.") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class GraphSubscriptions:
    """Subscriptions of one mailbox (the same tokens and request gate as its runs)."""

    def __init__(self, mailbox: GraphMailbox) -> None:
        self.mailbox = mailbox
        self.client: GraphClient = mailbox.client

    def resource(self, kind: str) -> str:
        """The Graph resource a subscription of ``kind`` watches."""
        return f"{self.mailbox.user_path.strip('/')}/{RESOURCES[kind]}"

    def create(self, kind: str, client_state: str, notification_url: str, lifecycle_url: str,
               minutes: int) -> Created:
        """Subscribe to ``kind``; SetupFailed when Graph refuses it (the validation handshake failed)."""
        wanted = datetime.now(tz=UTC) + timedelta(minutes=minutes)
        body = {"changeType": CHANGE_TYPES, "notificationUrl": notification_url,
                "lifecycleNotificationUrl": lifecycle_url, "resource": self.resource(kind),
                "expirationDateTime": graph_time(wanted), "clientState": client_state}
        resp = self.client.send("POST", "/subscriptions", body, allow=(400,))
        if resp.status == 400:
            raise SetupFailed("push_refused", "Microsoft Graph refused the subscription"
                                              f" ({_code(resp.body)}).")
        if not isinstance(resp.body, dict) or not resp.body.get("id"):
            raise Unavailable("Microsoft Graph answered a subscription without an id.")
        return Created(str(resp.body["id"]), kind, self.resource(kind), _expiry(resp.body))

    def renew(self, sub_id: str, minutes: int) -> float | None:
        """Extend a subscription; the expiry Graph granted, or None when Graph no longer has it."""
        wanted = datetime.now(tz=UTC) + timedelta(minutes=minutes)
        resp = self.client.send("PATCH", f"/subscriptions/{quote(sub_id, safe='-')}",
                                {"expirationDateTime": graph_time(wanted)}, allow=(404,))
        if resp.status == 404:
            return None
        return _expiry(resp.body)

    def delete(self, sub_id: str) -> bool:
        """Delete a subscription; False when Graph did not have it anyway."""
        resp = self.client.send("DELETE", f"/subscriptions/{quote(sub_id, safe='-')}", allow=(404,))
        return resp.status != 404

    def close(self) -> None:
        """Release connections."""
        self.mailbox.close()


def _code(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code", "") or "400")[:80]
    return "400"


def open_subscriptions(ctx: Any) -> GraphSubscriptions:
    """Subscriptions for a sync mailbox (``ctx`` is a :class:`backend.connectors.MailboxContext`)."""
    return GraphSubscriptions(open_mailbox(ctx))
