"""The admin console's page and sign-in: ``/admin``, a server-side session in a Secure HttpOnly cookie.

The console signs in with Salesforce through the same connected app as the task pane
(``/auth/salesforce/start?console=1``); the callback ends here (:func:`console_signed_in`) with a
session whose id is the cookie and whose CSRF token every state-changing call must send back
(``X-CSRF-Token``). Logout ends the session; so does a revoked Salesforce login (``api/admin_auth``).
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from flask import Blueprint, Response, abort, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from backend.extensions import services
from backend.security.crypto import random_token
from backend.web import html_page

bp = Blueprint("console", __name__)

# __Host-: Secure, Path=/ and no Domain, so no other subdomain can plant or read it.
COOKIE = "__Host-sidebar-console"
SESSION_SECONDS = 8 * 3600
CSRF_HEADER = "X-CSRF-Token"


def console_signed_in(uid: str) -> WerkzeugResponse:
    """Start a console session for ``uid`` and go to the console (the end of the Salesforce callback)."""
    store = services().store
    session = store.consoles.create(random_token(24), uid, random_token(24), SESSION_SECONDS)
    resp = redirect("/admin", code=303)
    resp.set_cookie(COOKIE, session.sid, max_age=SESSION_SECONDS, secure=True, httponly=True, samesite="Lax",
                    path="/")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def csrf_ok(expected: str) -> bool:
    """True when the request carries the session's CSRF token (and, when the browser says, our origin)."""
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/") != services().settings.PUBLIC_BASE_URL.rstrip("/"):
        return False
    return hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), expected)


@bp.get("/admin")
def console_page() -> Response:
    """The console (a wide page for a desktop browser); it asks the API whether someone is signed in."""
    return html_page("admin.html")


@bp.get("/admin/login")
def console_login() -> WerkzeugResponse:
    """Sign in with Salesforce (Production, Sandbox or a My Domain), then come back to the console."""
    env = request.args.get("env", "production")
    if env not in ("production", "sandbox", "mydomain"):
        abort(400)
    url = f"/auth/salesforce/start?console=1&env={env}"
    if env == "mydomain":
        url += f"&domain={quote(request.args.get('domain', ''), safe='')}"
    return redirect(url, code=302)


@bp.post("/admin/logout")
def console_logout() -> Response:
    """End this console session (CSRF-checked like every state-changing call)."""
    store = services().store
    sid = request.cookies.get(COOKIE, "")
    session = store.consoles.get(sid) if sid else None
    if session is not None:
        if not csrf_ok(session.csrf):
            abort(403)
        store.consoles.end(sid)
    resp = Response(status=204)
    resp.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Lax")
    return resp
