"""Change notifications of the fake Graph: ``/subscriptions``, the validation handshake, deliveries.

* ``POST /v1.0/subscriptions`` checks the resource (a folder's messages or the calendar's events
  of the token's own mailbox), the URLs (https), ``clientState`` (at most 128 characters) and the
  expiry, then validates both URLs as Graph does: a POST with ``?validationToken=`` that must be
  answered 200 with the token as the body within 10 s; otherwise 400 ``ValidationError``.
* ``PATCH`` renews (a new expiry), ``DELETE`` removes; an unknown or expired subscription is 404.
* A change to the fake mailbox (:meth:`FakeGraphState.notify`) POSTs a change notification with the
  subscription's ``clientState`` to its URL from a background thread (Graph delivers after the
  fact); tests expire or remove subscriptions, send lifecycle events, or drop deliveries.

Deliveries go over https with the test CA. ``routes`` maps an origin the app claims (its
``PUBLIC_BASE_URL``) to where it really listens on loopback, the way DNS would.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests
from flask import Flask, Response, request

from sandbox.outbox import Outbox, routed

if TYPE_CHECKING:
    from sandbox.graph import FakeGraphState, Item
    from sandbox.microsoft import MsUser

_RESOURCE = re.compile(r"^/?(me|users/([^/]+))/(mailFolders\('(Inbox|SentItems)'\)/messages|events)$", re.I)
_FOLDERS = {"inbox": "inbox", "sentitems": "sentitems"}
MAX_MINUTES = 10080
VALIDATION_TIMEOUT = 10.0


@dataclass
class FakeSubscription:
    """One subscription as the fake Graph keeps it."""

    id: str
    oid: str  # the mailbox's user
    folder: str  # "inbox", "sentitems" or "calendar"
    resource: str
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str
    client_state: str
    expires: float
    removed: bool = False

    def as_json(self) -> dict[str, Any]:
        """The subscription as Graph answers it."""
        return {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
                "id": self.id, "resource": self.resource, "changeType": ",".join(sorted(self.change_types)),
                "notificationUrl": self.notification_url, "lifecycleNotificationUrl": self.lifecycle_url,
                "clientState": self.client_state,
                "expirationDateTime": datetime.fromtimestamp(self.expires, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.%f0Z")}


@dataclass
class Delivery:
    """One POST the fake made to the app: what, where, the answer and how long it took."""

    url: str
    kind: str  # "validation", "notification", "lifecycle"
    status: int
    seconds: float
    body: Any = None


@dataclass
class GraphPush:
    """Subscriptions of the fake Graph and the notifications it sends."""

    graph: FakeGraphState
    ca_path: str = ""
    routes: dict[str, str] = field(default_factory=dict)
    subscriptions: dict[str, FakeSubscription] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    # Test controls: the longest lifetime granted (None: what was asked, up to Graph's maximum);
    # drop change notifications (what Graph does when it "misses" them).
    lifetime_seconds: float | None = None
    drop_notifications: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    _session: requests.Session | None = None

    def __post_init__(self) -> None:
        self._outbox: Outbox[tuple[str, str, Any]] = Outbox("fake-graph-push", self._deliver)

    # --- delivery ---------------------------------------------------------------------------------

    def _post(self, url: str, kind: str, body: Any, params: dict[str, str] | None = None) -> requests.Response | None:
        if self._session is None:
            self._session = requests.Session()
        started = time.monotonic()
        try:
            resp = self._session.post(routed(self.routes, url), json=body, params=params, timeout=VALIDATION_TIMEOUT,
                                      verify=self.ca_path or True,
                                      headers={"Content-Type": "text/plain"} if body is None else None)
        except requests.RequestException:
            with self.lock:
                self.deliveries.append(Delivery(url, kind, 0, time.monotonic() - started, body))
            return None
        with self.lock:
            self.deliveries.append(Delivery(url, kind, resp.status_code, time.monotonic() - started, body))
        return resp

    def _validate(self, url: str) -> bool:
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        resp = self._post(url, "validation", None, {"validationToken": token})
        return (resp is not None and resp.status_code == 200 and resp.text == token
                and resp.headers.get("Content-Type", "").startswith("text/plain"))

    def _deliver(self, job: tuple[str, str, Any]) -> None:
        self._post(*job)

    def _send(self, url: str, kind: str, body: Any) -> None:
        self._outbox.put((url, kind, body))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued delivery was made."""
        self._outbox.flush(timeout)

    def close(self) -> None:
        """Stop the delivery thread."""
        self._outbox.close()

    # --- what the mailbox fake calls ----------------------------------------------------------------

    def changed(self, user: MsUser, item: Item, change: str) -> None:
        """A message or event changed: notify each live subscription watching it."""
        now = time.time()
        with self.lock:
            subs = [s for s in self.subscriptions.values() if s.oid == user.oid and s.folder == item.folder
                    and not s.removed and s.expires > now and change in s.change_types]
            if self.drop_notifications:
                return
        for sub in subs:
            kind = "events" if sub.folder == "calendar" else "messages"
            self._send(sub.notification_url, "notification", {"value": [{
                "subscriptionId": sub.id, "subscriptionExpirationDateTime": sub.as_json()["expirationDateTime"],
                "changeType": change, "resource": f"Users/{user.oid}/{kind.title()}/{item.id}",
                "resourceData": {"@odata.type": f"#Microsoft.Graph.{kind[:-1].title()}", "id": item.id},
                "clientState": sub.client_state, "tenantId": user.tid}]})

    # --- test controls ----------------------------------------------------------------------------

    def of(self, mail: str) -> list[FakeSubscription]:
        """The live subscriptions of a mailbox."""
        user = self.graph.ms.find_user(mail)
        now = time.time()
        with self.lock:
            return [s for s in self.subscriptions.values()
                    if user is not None and s.oid == user.oid and not s.removed and s.expires > now]

    def expire(self, sub_id: str) -> None:
        """Let a subscription run out now (no more notifications; renewing it is a 404)."""
        with self.lock:
            self.subscriptions[sub_id].expires = time.time() - 1

    def lifecycle(self, sub_id: str, event: str) -> None:
        """Send a lifecycle event (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``)."""
        with self.lock:
            sub = self.subscriptions[sub_id]
            if event == "subscriptionRemoved":
                sub.removed = True
            user = self.graph.ms.find_user(sub.oid)
        self._send(sub.lifecycle_url, "lifecycle", {"value": [{
            "subscriptionId": sub.id, "subscriptionExpirationDateTime": sub.as_json()["expirationDateTime"],
            "tenantId": user.tid if user else "", "clientState": sub.client_state, "lifecycleEvent": event}]})

    # --- the HTTP side ----------------------------------------------------------------------------

    def create(self, info: Any, body: Any) -> tuple[int, Any]:
        """``POST /subscriptions``."""
        if not isinstance(body, dict):
            return 400, _error("InvalidRequest", "A subscription is a JSON object.")
        match = _RESOURCE.match(str(body.get("resource", "")))
        if not match:
            return 400, _error("InvalidRequest", "Unsupported resource.")
        user = self.graph.ms.find_user(info.oid) if match.group(1).lower() == "me" else \
            self.graph.ms.find_user(match.group(2))
        if user is None or user.tid != info.tid or (info.kind == "delegated" and user.oid != info.oid):
            return 403, _error("ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden]")
        changes = frozenset(c.strip() for c in str(body.get("changeType", "")).split(",") if c.strip())
        if not changes or not changes <= {"created", "updated", "deleted"}:
            return 400, _error("InvalidRequest", "Unsupported changeType.")
        urls = [str(body.get("notificationUrl", "")), str(body.get("lifecycleNotificationUrl", ""))]
        if not all(u.startswith("https://") for u in urls):
            return 400, _error("InvalidRequest", "The notification URL must use https.")
        state = body.get("clientState")
        if not isinstance(state, str) or len(state) > 128:
            return 400, _error("InvalidRequest", "clientState is at most 128 characters.")
        try:
            asked = datetime.fromisoformat(str(body["expirationDateTime"]).replace("Z", "+00:00")).timestamp()
        except (KeyError, ValueError):
            return 400, _error("InvalidRequest", "expirationDateTime is required.")
        now = time.time()
        if asked <= now or asked > now + MAX_MINUTES * 60 + 60:
            return 400, _error("InvalidRequest", f"Subscription expiration can only be {MAX_MINUTES} minutes in "
                                                 "the future.")
        if not all(self._validate(u) for u in urls):
            return 400, _error("ValidationError", "Subscription validation request failed. Notification endpoint "
                                                  "must respond with 200 OK to validation request.")
        folder = _FOLDERS.get((match.group(4) or "").lower(), "calendar")
        sub = FakeSubscription(str(uuid.uuid4()), user.oid, folder, str(body["resource"]), changes, urls[0],
                               urls[1], state, self._granted(asked, now))
        with self.lock:
            self.subscriptions[sub.id] = sub
        return 201, sub.as_json()

    def _granted(self, asked: float, now: float) -> float:
        return min(asked, now + self.lifetime_seconds) if self.lifetime_seconds is not None else asked

    def _owned(self, info: Any, sub_id: str) -> FakeSubscription | None:
        with self.lock:
            sub = self.subscriptions.get(sub_id)
        if sub is None or sub.removed or sub.expires <= time.time():
            return None
        user = self.graph.ms.find_user(sub.oid)
        if user is None or user.tid != info.tid or (info.kind == "delegated" and sub.oid != info.oid):
            return None
        return sub

    def renew(self, info: Any, sub_id: str, body: Any) -> tuple[int, Any]:
        """``PATCH /subscriptions/{id}``."""
        sub = self._owned(info, sub_id)
        if sub is None:
            return 404, _error("ResourceNotFound", "The object was not found.")
        try:
            asked = datetime.fromisoformat(str(body["expirationDateTime"]).replace("Z", "+00:00")).timestamp()
        except (KeyError, ValueError, TypeError):
            return 400, _error("InvalidRequest", "expirationDateTime is required.")
        now = time.time()
        if asked <= now or asked > now + MAX_MINUTES * 60 + 60:
            return 400, _error("InvalidRequest", "Invalid expiration.")
        with self.lock:
            sub.expires = self._granted(asked, now)
        return 200, sub.as_json()

    def delete(self, info: Any, sub_id: str) -> tuple[int, Any]:
        """``DELETE /subscriptions/{id}``."""
        sub = self._owned(info, sub_id)
        if sub is None:
            return 404, _error("ResourceNotFound", "The object was not found.")
        with self.lock:
            del self.subscriptions[sub_id]
        return 204, None


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def add_routes(app: Flask, push: GraphPush) -> None:
    """``/v1.0/subscriptions`` on the fake Graph's app."""
    def answer(status: int, body: Any) -> Response:
        import json

        return Response(json.dumps(body) if body is not None else b"", status=status,
                        mimetype="application/json")

    def caller() -> Any:
        return push.graph.ms.token_info(request.headers.get("Authorization"))

    @app.post("/v1.0/subscriptions")
    def create_subscription() -> Any:
        info = caller()
        if info is None:
            return answer(401, _error("InvalidAuthenticationToken", "Access token is empty or invalid."))
        return answer(*push.create(info, request.get_json(silent=True)))

    @app.route("/v1.0/subscriptions/<sub_id>", methods=["PATCH", "DELETE"])
    def one_subscription(sub_id: str) -> Any:
        info = caller()
        if info is None:
            return answer(401, _error("InvalidAuthenticationToken", "Access token is empty or invalid."))
        if request.method == "DELETE":
            return answer(*push.delete(info, sub_id))
        return answer(*push.renew(info, sub_id, request.get_json(silent=True)))

