"""Gmail push: ``users.watch`` to a Pub/Sub topic, ``users.stop``, and the push's OIDC token checked.

Pub/Sub's push subscription POSTs to ``{PUBLIC_BASE_URL}/hooks/gmail`` with ``Authorization:
Bearer <OIDC token>`` signed by Google for the push service account. :class:`PushVerifier` checks it
with google-auth (signature against ``GOOGLE_CERTS_URL``, kept for a few minutes; expiry; audience),
then the issuer and that the token is the configured service account's (``email``, verified).
A watch lasts 7 days; the clock renews it daily.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import jwt
import requests
from google.auth import exceptions as google_exceptions
from google.auth.transport import requests as google_requests
from google.oauth2 import id_token

from backend.config import Settings
from backend.connectors.google.http import check
from backend.connectors.google.reader import GmailMailbox, open_mailbox
from backend.errors import NotAuthentic, Unavailable
from backend.net.outbound import make_session

ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
WATCH_LABELS = ("INBOX", "SENT")
WATCH_UNITS = 100
STOP_UNITS = 50
CERTS_SECONDS = 300


class GmailWatch:
    """``users.watch`` / ``users.stop`` for one Gmail mailbox (its tokens and gate)."""

    def __init__(self, mailbox: GmailMailbox) -> None:
        self.mailbox = mailbox
        self.client = mailbox.client

    def watch(self, topic: str) -> tuple[str, float]:
        """Start (or renew) the watch: (historyId, expiry in epoch seconds)."""
        resp = check(self.client.post(f"{self.client.gmail_root}/gmail/v1/users/me/watch",
                                      {"topicName": topic, "labelIds": list(WATCH_LABELS),
                                       "labelFilterBehavior": "include"}, WATCH_UNITS))
        body = resp.body if isinstance(resp.body, dict) else {}
        try:
            return str(body["historyId"]), int(body["expiration"]) / 1000
        except (KeyError, TypeError, ValueError):
            raise Unavailable("Gmail answered a watch without its expiry.") from None

    def stop(self) -> None:
        """Stop every watch of the mailbox."""
        check(self.client.post(f"{self.client.gmail_root}/gmail/v1/users/me/stop", None, STOP_UNITS))

    def close(self) -> None:
        """Release connections."""
        self.mailbox.close()


def open_watch(ctx: Any) -> GmailWatch:
    """The watch of a sync mailbox (``ctx`` is a :class:`backend.connectors.MailboxContext`)."""
    return GmailWatch(open_mailbox(ctx))


class _CachedCerts(google_requests.Request):
    """google-auth's requests transport, keeping the certificates' answer for a few minutes."""

    def __init__(self, session: requests.Session, certs_url: str) -> None:
        super().__init__(session)
        self.certs_url = certs_url
        self._kept: tuple[float, Any] | None = None
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Mapping[str, str] | None = None,
                 timeout: Any = None, **kwargs: Any) -> Any:
        if url != self.certs_url or method != "GET":
            return super().__call__(url, method, body, headers, timeout, **kwargs)
        with self._lock:
            if self._kept is not None and self._kept[0] > time.monotonic():
                return self._kept[1]
        answer = super().__call__(url, method, body, headers, timeout or 10, **kwargs)
        if answer.status == 200:
            with self._lock:
                self._kept = (time.monotonic() + CERTS_SECONDS, answer)
        return answer


class PushVerifier:
    """Checks a Pub/Sub push's OIDC token: Google's signature, expiry, audience, issuer, service account."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.audience = settings.GOOGLE_PUBSUB_AUDIENCE or f"{settings.PUBLIC_BASE_URL}/hooks/gmail"
        self.account = settings.GOOGLE_PUBSUB_PUSH_ACCOUNT.lower()
        self._request = _CachedCerts(session or make_session(settings.OUTBOUND_CA_BUNDLE, 10),
                                     settings.GOOGLE_CERTS_URL)

    def verify(self, authorization: str | None) -> None:
        """Raise NotAuthentic unless the ``Authorization`` header holds a valid push token of ours."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token or len(token) > 8192 or not self.account:
            raise NotAuthentic("The push carries no usable token.")
        try:
            claims = id_token.verify_token(token, self._request, audience=self.audience,
                                           certs_url=self.settings.GOOGLE_CERTS_URL)
        except google_exceptions.TransportError:
            raise Unavailable("Google's certificates could not be fetched.") from None
        except (ValueError, google_exceptions.GoogleAuthError, jwt.PyJWTError):
            # google-auth reads a JWKS with PyJWT, whose malformed-token errors are its own.
            raise NotAuthentic("The push token did not verify.") from None
        if claims.get("iss") not in ISSUERS:
            raise NotAuthentic("The push token was not issued by Google.")
        if str(claims.get("email", "")).lower() != self.account or claims.get("email_verified") is not True:
            raise NotAuthentic("The push token is not the push service account's.")

