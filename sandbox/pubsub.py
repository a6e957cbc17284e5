"""Gmail push in the fake Google: ``users.watch`` / ``users.stop``, and Pub/Sub push deliveries.

``POST /gmail/v1/users/me/watch`` with a ``topicName`` the fake knows (a push subscription set up
by the operator: :meth:`FakePubSub.subscribe` with the endpoint, the push service account and the
audience) answers ``{historyId, expiration}`` (7 days, or ``lifetime_seconds``). While a watch is
live, every history record of a watched label makes Pub/Sub POST, from a background thread, a push
message (``{"message": {"data": base64 {"emailAddress", "historyId"}, ...}, "subscription"}``)
with ``Authorization: Bearer`` an OIDC token signed by the fake Google's key (served as a JWKS at
``/oauth2/v3/certs``), as Pub/Sub's authenticated push does. ``routes`` maps an origin to where the
app really listens, as DNS would.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
import requests
from flask import Flask, Response, request

from sandbox.outbox import Outbox, routed

if TYPE_CHECKING:
    from sandbox.gmail import FakeGmailState

WATCH_SECONDS = 7 * 24 * 3600


@dataclass
class PushSubscription:
    """A Pub/Sub push subscription on a topic: where it pushes and as whom."""

    name: str
    endpoint: str
    account: str
    audience: str


@dataclass
class Watch:
    """A mailbox's watch: the topic, the labels, until when."""

    topic: str
    labels: frozenset[str]
    expires: float


@dataclass
class FakePubSub:
    """Topics with push subscriptions, the mailboxes' watches, and the pushes made."""

    gmail: FakeGmailState
    ca_path: str = ""
    routes: dict[str, str] = field(default_factory=dict)
    topics: dict[str, PushSubscription] = field(default_factory=dict)
    watches: dict[str, Watch] = field(default_factory=dict)
    pushes: list[tuple[str, int]] = field(default_factory=list)  # (address, status)
    lifetime_seconds: float | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._session = requests.Session()
        self._outbox: Outbox[tuple[str, dict[str, Any], PushSubscription]] = Outbox("fake-pubsub", self._push)

    def subscribe(self, topic: str, endpoint: str, account: str, audience: str = "") -> None:
        """Create a push subscription on ``topic`` (as the operator does in the Cloud console)."""
        self.topics[topic] = PushSubscription(f"{topic.replace('/topics/', '/subscriptions/')}-push", endpoint,
                                              account, audience or endpoint)

    def push_token(self, sub: PushSubscription, account: str | None = None, audience: str | None = None,
                   key: Any = None) -> str:
        """The OIDC token Pub/Sub signs for a push (tests forge others with the arguments)."""
        now = int(time.time())
        signer = key or self.gmail.google.key
        claims = {"iss": "https://accounts.google.com", "aud": audience or sub.audience, "azp": "1234567890",
                  "sub": "1234567890", "email": account or sub.account, "email_verified": True, "iat": now,
                  "exp": now + 3600}
        return jwt.encode(claims, signer.private, algorithm="RS256", headers={"kid": signer.kid})

    def body_for(self, address: str, history_id: int, sub: PushSubscription) -> dict[str, Any]:
        """A push message body for a mailbox change."""
        data = json.dumps({"emailAddress": address, "historyId": history_id}).encode()
        return {"message": {"data": base64.b64encode(data).decode(), "messageId": uuid.uuid4().hex[:16],
                            "publishTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                "subscription": sub.name}

    def url(self, url: str) -> str:
        """Where a URL really goes (``routes``)."""
        return routed(self.routes, url)

    def recorded(self, address: str, history_id: int, labels: set[str]) -> None:
        """A history record of ``address``: push it if a live watch covers one of its labels."""
        with self.lock:
            watch = self.watches.get(address)
            if watch is None or watch.expires < time.time() or not (labels & watch.labels):
                return
            sub = self.topics.get(watch.topic)
            if sub is None:
                return
        self._outbox.put((address, self.body_for(address, history_id, sub), sub))

    def _push(self, job: tuple[str, dict[str, Any], PushSubscription]) -> None:
        address, body, sub = job
        try:
            resp = self._session.post(self.url(sub.endpoint), json=body, timeout=10, verify=self.ca_path or True,
                                      headers={"Authorization": f"Bearer {self.push_token(sub)}"})
            status = resp.status_code
        except requests.RequestException:
            status = 0
        with self.lock:
            self.pushes.append((address, status))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued push was made."""
        self._outbox.flush(timeout)

    def close(self) -> None:
        """Stop the delivery thread."""
        self._outbox.close()


def register_pubsub(app: Flask, pubsub: FakePubSub) -> None:
    """``users.watch``, ``users.stop`` and the certificates on the fake Google app."""
    def answer(status: int, body: Any) -> Response:
        return Response(json.dumps(body) if body is not None else b"", status=status, mimetype="application/json")

    def caller() -> Any:
        return pubsub.gmail.google.token_info(request.headers.get("Authorization"))

    @app.get("/oauth2/v3/certs")
    def certs() -> Any:
        return answer(200, {"keys": [pubsub.gmail.google.key.jwk()]})

    @app.post("/gmail/v1/users/me/watch")
    def watch() -> Any:
        info = caller()
        if info is None:
            return answer(401, {"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}})
        body = request.get_json(silent=True) or {}
        topic = str(body.get("topicName", ""))
        if topic not in pubsub.topics:
            return answer(400, {"error": {"code": 400, "message": "Invalid topicName", "status": "INVALID_ARGUMENT"}})
        labels = frozenset(str(v) for v in body.get("labelIds") or ["INBOX"])
        lifetime = pubsub.lifetime_seconds if pubsub.lifetime_seconds is not None else WATCH_SECONDS
        expires = time.time() + lifetime
        box = pubsub.gmail.mailbox(info.email)
        with pubsub.lock:
            pubsub.watches[box.email] = Watch(topic, labels, expires)
        return answer(200, {"historyId": str(box.history_id), "expiration": str(int(expires * 1000))})

    @app.post("/gmail/v1/users/me/stop")
    def stop() -> Any:
        info = caller()
        if info is None:
            return answer(401, {"error": {"code": 401, "message": "Invalid Credentials", "status": "UNAUTHENTICATED"}})
        with pubsub.lock:
            pubsub.watches.pop(info.email, None)
        return answer(204, None)
