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
# The ``once`` purpose marking a user's Salesforce login as checked (``backend.api.session.check_salesforce``).
SALESFORCE_CHECK = "salesforce-check"


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
    if not sid:
        raise ApiError(401, "token_revoked", "You were logged out. Log in to Salesforce again.")
    # One round trip for the session, the user, the idle timeout and whether the Salesforce check is
    # due. The touch goes before the owner is known: the signed token names the sid and uid together,
    # and EXPIRE leaves a revoked (deleted) session gone. The check's marker is only read here: it is
    # set (SET NX) once the request is known to be the user's, so a revoked token cannot put it off.
    batch = svc.store.batch()
    owner = svc.store.sessions.owner_in(batch, sid)
    found = svc.store.users.get_in(batch, uid)
    svc.store.sessions.touch_in(batch, sid, svc.settings.API_SESSION_IDLE_SECONDS)
    checked = svc.store.once.seen_in(batch, SALESFORCE_CHECK, uid)
    batch.run()
    user = found.value
    if owner.value != uid or user is None:
        raise ApiError(401, "token_revoked", "You were logged out. Log in to Salesforce again.")
    g.salesforce_check_due = not checked.value
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
