"""What every sign-in dialog shares: OAuth state, dialog tickets, and the page that ends a dialog.

A dialog is a top-level window (``displayDialogAsync``): its Flask-Session cookie is first-party
there, and holds the flow in progress (state nonce, PKCE verifier, the user the ticket named).
The dialog ends on :func:`dialog_result`, a page that hands the task pane a JSON string through
``Office.context.ui.messageParent``: ``{"status": "ok", ...}`` or
``{"status": "error", "error": {"code", "message"}}``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, render_template, request, session

from backend.extensions import services
from backend.security.crypto import (
    DecryptError,
    Purpose,
    SignatureInvalid,
    SignatureTooOld,
    constant_time_equal,
    random_token,
)
from backend.store.users import User

log = logging.getLogger(__name__)

STATE_MAX_AGE = 15 * 60
TICKET_MAX_AGE = 5 * 60
DIALOG_CODE_MAX_AGE = 5 * 60
# Sign-in starts that write a dialog session (one per STATE_MAX_AGE window): per client address (an
# IPv6 /64 is one address: one host holds all of it), per network (IPv4 /24, IPv6 /48) and in all, so
# an anonymous flood cannot fill Redis with 15-minute sessions, and one network cannot take more than a
# tenth of the overall cap (which would otherwise refuse every customer's sign-in).
DIALOG_STARTS_PER_ADDRESS = 30
DIALOG_STARTS_PER_NETWORK = 300
DIALOG_STARTS_OVERALL = 3000
# SHA-256 in unpadded base64url: what the pane sends as pane_challenge.
_PANE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_NOT_THIS_SIGN_IN = "The sign-in answer was not for this sign-in. Start the sign-in again."
_START_AGAIN = "Start again from the add-in."
# A sealed value of the dialog's session that is missing or does not open: not this sign-in's answer.
SEALED_NOT_OURS = "The sign-in answer was not for this sign-in. Start again."


class DialogError(Exception):
    """Ends a sign-in dialog with an error page (and the same error sent to the task pane)."""

    def __init__(self, code: str, message: str, status: int = 400, retry_after: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after


def dialog_result(payload: dict[str, Any], status: int = 200, heading: str = "", message: str = "") -> Response:
    """The page that ends a dialog and passes ``payload`` to the task pane."""
    ok = payload.get("status") == "ok"
    html = render_template(
        "dialog_result.html",
        payload=payload,
        heading=heading or ("You're signed in" if ok else "Sign-in did not complete"),
        message=message or ("You can close this window." if ok else str(payload.get("error", {}).get("message", ""))),
        ok=ok,
    )
    resp = Response(html, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def dialog_error(exc: DialogError) -> Response:
    """The error page for a failed dialog."""
    resp = dialog_result({"status": "error", "error": {"code": exc.code, "message": exc.message}}, status=exc.status)
    if exc.status == 429 and exc.retry_after:
        resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


def client_buckets(remote_addr: str | None) -> tuple[str, str]:
    """The (address, network) a client's starts count under: IPv4 /32 and /24, IPv6 /64 and /48."""
    try:
        ip = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        # Not an IP (a unix socket's peer, say): counted as given, bounded in length.
        raw = (remote_addr or "unknown")[:64]
        return raw, raw
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:a.b.c.d is the IPv4 client itself
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip), str(ipaddress.ip_network(f"{ip}/24", strict=False))
    return (str(ipaddress.ip_network(f"{ip}/64", strict=False)),
            str(ipaddress.ip_network(f"{ip}/48", strict=False)))


def bound_dialog_starts() -> None:
    """Refuse (429) a sign-in start that would write one dialog session too many (address, network, overall)."""
    limits = services().store.ratelimit
    # The address is Werkzeug's remote_addr: the proxy's client address when the deployment wraps
    # the app in ProxyFix, the peer's otherwise. The overall counter bounds the live sessions: each
    # lives STATE_MAX_AGE, the window's length, so at most two windows' worth exist at once.
    address, network = client_buckets(request.remote_addr)
    for name, who, limit in (("dialog-start", address, DIALOG_STARTS_PER_ADDRESS),
                             ("dialog-start-net", network, DIALOG_STARTS_PER_NETWORK),
                             ("dialog-start-all", "all", DIALOG_STARTS_OVERALL)):
        allowed, retry_after = limits.hit(name, who, limit, STATE_MAX_AGE)
        if not allowed:
            raise DialogError("rate_limited", "Too many sign-ins were started. Try again in a few minutes.",
                              429, retry_after=retry_after)


def begin_state(provider: str, **extra: Any) -> str:
    """Start an OAuth flow in this dialog: returns the signed ``state`` to send to the provider."""
    nonce = random_token(24)
    session[f"oauth:{provider}"] = {"nonce": nonce, **extra}
    return services().signer.sign(Purpose.OAUTH_STATE, {"n": nonce, "p": provider})


def state_flow() -> str:
    """The flow the callback's ``state`` was signed for ("" when it is none of ours); nothing is consumed."""
    try:
        payload = services().signer.unsign(Purpose.OAUTH_STATE, request.args.get("state", ""), max_age=STATE_MAX_AGE)
    except (SignatureTooOld, SignatureInvalid):
        return ""
    return str(payload.get("p", "")) if isinstance(payload, dict) else ""


def finish_state(provider: str) -> dict[str, Any]:
    """Check the callback's ``state`` (signature, this dialog's flow, used once); return the flow."""
    raw = request.args.get("state", "")
    if not raw:
        raise DialogError("state_missing", "The sign-in answer had no state. Start the sign-in again.")
    try:
        payload = services().signer.unsign(Purpose.OAUTH_STATE, raw, max_age=STATE_MAX_AGE)
    except SignatureTooOld:
        raise DialogError("state_expired", "The sign-in took too long. Start the sign-in again.") from None
    except SignatureInvalid:
        raise DialogError("state_invalid", _NOT_THIS_SIGN_IN) from None
    nonce = str(payload.get("n", ""))
    if payload.get("p") != provider or not nonce:
        raise DialogError("state_invalid", _NOT_THIS_SIGN_IN)
    # Replays are refused even from the same window: the first use marks the nonce.
    if not services().store.once.first_use("oauth-state", nonce, STATE_MAX_AGE):
        raise DialogError("state_replayed", "This sign-in answer was already used. Start the sign-in again.")
    flow = session.pop(f"oauth:{provider}", None)
    if not isinstance(flow, dict) or flow.get("nonce") != nonce:
        raise DialogError(
            "state_mismatch",
            "This sign-in was started in another window or session. Start the sign-in again from the add-in.",
        )
    return flow


def pane_challenge_arg() -> str:
    """The ``pane_challenge`` of a dialog's start URL: the hash of a verifier only the opening pane holds."""
    value = request.args.get("pane_challenge", "")
    if not _PANE_CHALLENGE.match(value):
        raise DialogError("pane_challenge_missing", f"This sign-in was not started by the add-in. {_START_AGAIN}")
    return value


def pane_challenge_of(verifier: str) -> str:
    """The challenge for a pane's verifier: base64url(SHA-256(verifier)), unpadded (as PKCE's S256)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def issue_dialog_code(uid: str, pane_challenge: str, **extra: str) -> str:
    """A one-time code the task pane trades at ``POST /api/session``, usable only with its verifier."""
    nonce = random_token(24)
    svc = services()
    svc.store.once.put("dialog-code", nonce, f"{uid} {pane_challenge}", DIALOG_CODE_MAX_AGE)
    return svc.signer.sign(Purpose.DIALOG_CODE, {"n": nonce, **extra})


def _bound_uid(value: str | None, verifier: str) -> str | None:
    uid, _, challenge = (value or "").partition(" ")
    if not uid or not challenge or not verifier or not constant_time_equal(challenge, pane_challenge_of(verifier)):
        return None
    return uid


def unspent_dialog_code(code: str, verifier: str) -> str | None:
    """The uid of an authentic, unspent code presented with its pane's verifier, without spending it."""
    try:
        payload = services().signer.unsign(Purpose.DIALOG_CODE, code, max_age=DIALOG_CODE_MAX_AGE)
    except SignatureInvalid:
        return None
    return _bound_uid(services().store.once.peek("dialog-code", str(payload.get("n", ""))), verifier)


def redeem_dialog_code(code: str, verifier: str) -> str | None:
    """The uid a one-time code stands for, or None (tampered, expired, already used, or another pane's)."""
    try:
        payload = services().signer.unsign(Purpose.DIALOG_CODE, code, max_age=DIALOG_CODE_MAX_AGE)
    except SignatureInvalid:
        return None
    if unspent_dialog_code(code, verifier) is None:
        return None  # another pane's code is left for the pane that opened the dialog
    return _bound_uid(services().store.once.take("dialog-code", str(payload.get("n", ""))), verifier)


def issue_ticket(uid: str, provider: str) -> str:
    """A short-lived, single-use ticket naming the user, for a dialog's start URL."""
    return services().signer.sign(Purpose.DIALOG_TICKET, {"u": uid, "p": provider, "n": random_token(16)})


def redeem_ticket(provider: str, ticket: str) -> str:
    """The uid a dialog ticket names; DialogError when tampered, expired, reused or for another provider."""
    if not ticket:
        raise DialogError("ticket_missing", "Open this sign-in from the add-in's Sync settings.", 401)
    try:
        payload = services().signer.unsign(Purpose.DIALOG_TICKET, ticket, max_age=TICKET_MAX_AGE)
    except SignatureTooOld:
        raise DialogError("ticket_expired", f"This sign-in link has expired. {_START_AGAIN}", 401) from None
    except SignatureInvalid:
        raise DialogError("ticket_invalid", f"This sign-in link is not valid. {_START_AGAIN}", 401) from None
    if payload.get("p") != provider:
        raise DialogError("ticket_invalid", "This sign-in link is for another service.", 401)
    if not services().store.once.first_use("dialog-ticket", str(payload.get("n", "")), TICKET_MAX_AGE):
        raise DialogError("ticket_used", "This sign-in link was already used. Start again from the add-in.", 401)
    return str(payload.get("u", ""))


def require_configured(configured: bool, provider: str, service: str) -> None:
    """DialogError (503) when the server has no OAuth client for ``provider``."""
    if not configured:
        raise DialogError(f"{provider}_not_configured",
                          f"{service} sign-in is not configured on this server. Contact your administrator.", 503)


def dialog_user(provider: str) -> User:
    """The user the dialog's ``?ticket=`` names (the ticket is spent); DialogError when it names none."""
    uid = redeem_ticket(provider, request.args.get("ticket", ""))
    user = services().store.users.get(uid)
    if user is None:
        raise DialogError("ticket_invalid", f"This sign-in link is not valid. {_START_AGAIN}", 401)
    return user


def flow_user(flow: Mapping[str, Any]) -> User:
    """The user a finished flow (:func:`finish_state`) was started for; DialogError when they are gone."""
    user = services().store.users.get(str(flow.get("uid", "")))
    if user is None:
        raise DialogError("ticket_invalid", f"Your add-in session ended. {_START_AGAIN}", 401)
    return user


def unseal_session(key: str) -> str:
    """Take a value the dialog's session keeps sealed (used once); DialogError when missing or not ours."""
    sealed = session.pop(key, None)
    if not isinstance(sealed, str):
        raise DialogError("state_mismatch", f"This sign-in was started in another window or session. {_START_AGAIN}")
    try:
        return services().box.decrypt(sealed)
    except DecryptError:
        raise DialogError("state_invalid", SEALED_NOT_OURS) from None


def finish_dialog(step: Callable[[], Response], logger: logging.Logger, what: str) -> Response:
    """Run a callback's ``step``; a DialogError becomes the error page, logged as ``what`` failed."""
    try:
        return step()
    except DialogError as exc:
        logger.info("%s failed code=%s", what, exc.code)
        return dialog_error(exc)
