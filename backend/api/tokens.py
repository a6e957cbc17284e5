"""API bearer tokens: signed (itsdangerous), expiring, and revocable through a server-side session.

A token lives at most ``API_TOKEN_TTL_SECONDS`` (its signature's age) and its session ends after
``API_SESSION_IDLE_SECONDS`` without a request. Every authenticated request also checks that
Salesforce still accepts the user's login (``backend.api.session.check_salesforce``, cached
``SALESFORCE_CHECK_SECONDS``), and the worker ends every session when a refresh is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import g, request

from backend.api.errors import ApiError
from backend.extensions import services
from backend.security.crypto import Purpose, SignatureInvalid, SignatureTooOld, random_token
from backend.store.users import User

LAST_SEEN_SECONDS = 300


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token and when it stops working."""

    token: str
    sid: str
    expires_at: str


def issue_token(uid: str) -> IssuedToken:
    """Start an API session for ``uid`` and return its bearer token."""
    svc = services()
    ttl = svc.settings.API_TOKEN_TTL_SECONDS
    sid = random_token(18)
    svc.store.sessions.create(sid, uid, ttl, svc.settings.API_SESSION_IDLE_SECONDS)
    token = svc.signer.sign(Purpose.API_TOKEN, {"sid": sid, "uid": uid})
    expires = datetime.fromtimestamp(time.time() + ttl, tz=UTC).isoformat(timespec="seconds")
    return IssuedToken(token=token, sid=sid, expires_at=expires)


def authenticate() -> tuple[User, str]:
    """The user and session id behind the request's bearer token; ApiError 401 otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "Log in to Salesforce first.")
    svc = services()
    try:
        payload = svc.signer.unsign(Purpose.API_TOKEN, token.strip(), max_age=svc.settings.API_TOKEN_TTL_SECONDS)
    except SignatureTooOld:
        raise ApiError(401, "token_expired", "Your session has expired. Log in to Salesforce again.") from None
    except SignatureInvalid:
        raise ApiError(401, "invalid_token", "Your session is not valid. Log in to Salesforce again.") from None
    sid, uid = str(payload.get("sid", "")), str(payload.get("uid", ""))
    if not sid or svc.store.sessions.owner(sid) != uid:
        raise ApiError(401, "token_revoked", "You were logged out. Log in to Salesforce again.")
    user = svc.store.users.get(uid)
    if user is None:
        raise ApiError(401, "token_revoked", "You were logged out. Log in to Salesforce again.")
    # In use: the idle timeout starts again (a stolen token left unused dies with it).
    svc.store.sessions.touch(sid, svc.settings.API_SESSION_IDLE_SECONDS)
    now = time.time()
    if now - user.last_seen_at > LAST_SEEN_SECONDS:
        # "Last add-in use" in the console; written at most every few minutes per user.
        svc.store.users.update(uid, last_seen_at=now)
        user.last_seen_at = now
    g.user, g.sid = user, sid
    return user, sid


def current_user() -> User:
    """The authenticated user of this request (call after :func:`authenticate`)."""
    user: User = g.user
    return user
