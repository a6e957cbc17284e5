"""Who calls ``/api/admin``: the console's session (cookie + CSRF token) or a pane's bearer token, and an admin.

A non-admin gets 403 ``not_admin``; a user of another org is answered 404 as if unknown. A
Salesforce login that no longer works ends every session of the person, the console's included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import g, request

from backend.admin.roles import is_admin
from backend.api.errors import ApiError
from backend.api.tokens import authenticate
from backend.auth.console import COOKIE, csrf_ok
from backend.errors import AuthRevoked, Throttled, Unavailable
from backend.extensions import services
from backend.security.crypto import DecryptError
from backend.store.consoles import ConsoleSession
from backend.store.users import User

log = logging.getLogger(__name__)
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Caller:
    """The person behind an admin call, and the console session when it came from the console."""

    user: User
    console: ConsoleSession | None


def signed_in() -> Caller:
    """The caller (401 when neither a live console session nor a bearer token; 403 on a CSRF failure)."""
    if request.headers.get("Authorization"):
        user, _ = authenticate()
        return Caller(user, None)
    store = services().store
    sid = request.cookies.get(COOKIE, "")
    session = store.consoles.get(sid) if sid else None
    if session is None:
        raise ApiError(401, "unauthorized", "Sign in to the console with Salesforce.")
    if request.method not in _SAFE_METHODS and not csrf_ok(session.csrf):
        raise ApiError(403, "csrf_failed", "This request did not come from the console. Reload the page.")
    owner = store.users.get(session.uid)
    if owner is None or owner.salesforce_status != "connected":
        store.consoles.end(session.sid)
        raise ApiError(401, "salesforce_revoked", "Your Salesforce login ended. Sign in again.")
    return Caller(owner, session)


def _revoked(user: User, reason: str) -> ApiError:
    from backend.auth.salesforce import credentials_for

    store = services().store
    store.users.update(user.id, salesforce_status="revoked", salesforce_status_reason=reason)
    credentials_for(user).forget()
    store.sessions.revoke_all(user.id)
    store.consoles.end_all(user.id)
    log.warning("salesforce login unusable at admin check uid=%s", user.id)
    return ApiError(401, "salesforce_revoked", f"{reason}. Sign in to Salesforce again.")


def admin_flag(user: User) -> bool:
    """Whether ``user`` is an admin (asked of Salesforce at most every five minutes); 401/503 on trouble."""
    svc = services()
    try:
        return is_admin(svc.store, svc.settings, svc.clients.salesforce_oauth, user)
    except AuthRevoked as exc:
        raise _revoked(user, f"Salesforce no longer accepts your login ({exc.message})") from None
    except DecryptError:
        # Our configuration, not the person's login (issue 18): never a revocation. The error
        # handler answers 503 server_misconfigured and logs what to fix.
        raise
    except (Unavailable, Throttled):
        raise ApiError(503, "salesforce_unavailable",
                       "Salesforce could not say whether you are an administrator. Try again shortly.") from None


def require_admin() -> Caller:
    """The caller, who must administer their org's Sidebar Sync (403 ``not_admin`` otherwise)."""
    caller = signed_in()
    if not admin_flag(caller.user):
        raise ApiError(403, "not_admin", "Only your organisation's Sidebar Sync administrators can do this.")
    g.admin = caller
    return caller


def org_user(caller: Caller, uid: str) -> User:
    """A user of the admin's own org; 404 for anyone else (never a hint that they exist)."""
    user = services().store.users.get(uid) if len(uid) <= 64 else None
    if user is None or user.org_id != caller.user.org_id:
        raise ApiError(404, "not_found", "There is no such user in your organisation.")
    return user
