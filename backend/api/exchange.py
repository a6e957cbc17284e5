"""``POST /api/sync/exchange``: connect an on-premises Exchange mailbox with a login and password.

Order of work, each step before the next:

1. Validate the body (lengths, no control characters, a login that is an email address or
   ``DOMAIN\\user``, an https EWS URL without credentials) - nothing leaves the server for bad input.
2. Count the attempt, twice: per Sidebar user (``CONNECT_ATTEMPTS_PER_USER`` per
   ``CONNECT_WINDOW_SECONDS``) and per *target login* across all users (``CONNECT_ATTEMPTS_PER_LOGIN``).
   The forms of one account count together: ``alice@acme.example``, ``ACME\\alice`` and
   ``acme.example\\alice`` are all ``acme\\alice`` (the user name with the first label of the
   domain, lower-cased); logins that only share those count together too, which errs on the side of
   the account. An alias with another user name cannot be told apart without the directory.
   Repeated wrong passwords can lock a person's directory account, and the per-login count is what
   protects it: many Sidebar users cannot add up more tries against one login, and the answers
   (``auth_failed``, ``mailbox_mismatch`` naming the mailbox) cannot be used as an oracle beyond it.
   Either limit answers ``rate_limited`` with ``retry_after``. A success clears only the counter of
   the login that succeeded (so succeeding with one's own login does not buy more tries against
   another's); the per-user count runs out with its window.
3. Prove the credentials and read the mailbox identity (``backend.connectors.exchange.connect``:
   Autodiscover or the given URL, all through the outbound host guard, bounded in time).
4. Check that the mailbox is the add-in's (primary address or alias).
5. Only then store the password encrypted and activate sync (``backend.sync.activation.activate``),
   which enqueues the first run. A failed attempt writes nothing, so an earlier working connection
   stays as it was; a reconnect of the same mailbox (new password) keeps its cursors.

The password is never logged, echoed, put in a job, or stored except encrypted. The connector
module (and exchangelib) is imported on first use, so the web process loads it only when needed.
"""

from __future__ import annotations

import logging
import re
from typing import Any, NoReturn
from urllib.parse import urlsplit

from flask import Response, jsonify

from backend.api.blueprint import bp
from backend.api.errors import ApiError
from backend.api.sync import sync_view
from backend.api.tokens import current_user
from backend.api.validation import is_email, json_body, text_field
from backend.errors import SetupFailed
from backend.extensions import services
from backend.jobs.sync import enqueue_sync
from backend.security.crypto import keyed_hash
from backend.sync.activation import activate, check_mailbox_match, confirm_exchange_identity

log = logging.getLogger(__name__)

CONNECT_ATTEMPTS_PER_LOGIN = 5
CONNECT_ATTEMPTS_PER_USER = 10
CONNECT_ATTEMPTS = CONNECT_ATTEMPTS_PER_LOGIN  # the old name
CONNECT_WINDOW_SECONDS = 15 * 60
MAX_LOGIN = 256
MAX_PASSWORD = 256
MAX_URL = 2048
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# DOMAIN\user: a NetBIOS-style domain and an account name, no spaces, slashes or '@'.
_DOMAIN_LOGIN = re.compile(r"^[^\\/\s@:*?\"<>|]{1,64}\\[^\\/\s:*?\"<>|]{1,104}$")

# HTTP status for each failure the pane shows; anything unexpected is an ews_error (502), never a 500.
_STATUS = {
    "invalid_input": 400,
    "host_not_allowed": 400,
    "auth_failed": 422,
    "mailbox_mismatch": 422,
    "mailbox_unknown": 422,
    "mailbox_not_found": 422,
    "ews_unreachable": 502,
    "not_ews": 502,
    "tls_error": 502,
    "ews_error": 502,
    "timeout": 504,
}


def _password(data: dict[str, Any]) -> str:
    value = data.get("password")
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_input", "Password is required.", field="password")
    if len(value) > MAX_PASSWORD:
        raise ApiError(400, "invalid_input", f"Password is too long (at most {MAX_PASSWORD} characters).",
                       field="password")
    if _CONTROL.search(value):
        raise ApiError(400, "invalid_input", "Password contains characters that are not allowed.", field="password")
    return value  # not stripped: spaces can be part of a password


def _login(data: dict[str, Any]) -> str:
    value = text_field(data, "login", max_len=MAX_LOGIN, label="Login")
    if not (is_email(value) or _DOMAIN_LOGIN.match(value)):
        raise ApiError(400, "invalid_input", "Login must be your email address or DOMAIN\\user.", field="login")
    return value


def _ews_url(data: dict[str, Any]) -> str:
    value = text_field(data, "ews_url", required=False, max_len=MAX_URL, label="EWS URL")
    if not value:
        return ""
    if any(c.isspace() for c in value):
        raise ApiError(400, "invalid_input", "EWS URL must not contain spaces.", field="ews_url")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ApiError(400, "invalid_input", "EWS URL is not a valid address.", field="ews_url") from None
    if parts.scheme.lower() != "https":
        raise ApiError(400, "invalid_input", "EWS URL must start with https://.", field="ews_url")
    if not parts.hostname:
        raise ApiError(400, "invalid_input", "EWS URL has no server name.", field="ews_url")
    if "@" in parts.netloc:
        raise ApiError(400, "invalid_input", "EWS URL must not contain a user name or password.", field="ews_url")
    if parts.fragment:
        raise ApiError(400, "invalid_input", "EWS URL must not contain a '#' part.", field="ews_url")
    return value


def login_account(login: str) -> str:
    """The account a login names, for counting attempts: ``{first domain label}\\{user}``, lower-cased."""
    value = login.strip().lower()
    if "\\" in value:
        domain, _, user = value.partition("\\")
    else:
        user, _, domain = value.rpartition("@")
    return f"{domain.split('.', 1)[0]}\\{user}"


def _login_key(secret_key: str, login: str) -> str:
    """The per-login counter's key: the account the login names, keyed-hashed (no address in Redis)."""
    return keyed_hash(secret_key, "exchange-login:" + login_account(login))[:32]


def _rate_limited(retry_after: int, for_login: bool) -> NoReturn:
    """Refuse the attempt with when to try again."""
    minutes = max(1, (retry_after + 59) // 60)
    window = CONNECT_WINDOW_SECONDS // 60
    # The limit itself is said: a person can tell a lock-out guard from a broken server.
    what = (f"Too many connection attempts for this login (at most {CONNECT_ATTEMPTS_PER_LOGIN} every {window} "
            "minutes, from everyone)" if for_login else
            f"Too many connection attempts (at most {CONNECT_ATTEMPTS_PER_USER} every {window} minutes)")
    raise ApiError(429, "rate_limited", f"{what}. To protect the account from being locked, try again in "
                                        f"{minutes} minute{'s' if minutes != 1 else ''}.", retry_after=retry_after)


def _failed(exc: SetupFailed) -> ApiError:
    status = _STATUS.get(exc.code, 502)
    return ApiError(status, exc.code, exc.message)


@bp.post("/sync/exchange")
def connect_exchange() -> Response:
    """Connect on-premises Exchange (login, password, optional EWS URL) and activate sync."""
    data = json_body()
    login = _login(data)
    password = _password(data)
    ews_url = _ews_url(data)
    user = current_user()
    svc = services()
    limits = svc.store.ratelimit
    allowed, retry_after = limits.hit("exchange-connect", user.id, CONNECT_ATTEMPTS_PER_USER, CONNECT_WINDOW_SECONDS)
    if not allowed:
        _rate_limited(retry_after, for_login=False)  # refused here: the login's counter is not touched
    login_key = _login_key(svc.settings.SECRET_KEY, login)
    allowed, retry_after = limits.hit("exchange-connect-login", login_key, CONNECT_ATTEMPTS_PER_LOGIN,
                                      CONNECT_WINDOW_SECONDS)
    if not allowed:
        _rate_limited(retry_after, for_login=True)

    from backend.connectors import exchange  # imported on first use: loads exchangelib

    try:
        result = exchange.connect(svc.settings, login, password, ews_url or None,
                                  email_hint=user.addin_mailbox, resolver=svc.clients.dns_resolver)
        check_mailbox_match(user.addin_mailbox, result.identity)
    except SetupFailed as exc:
        log.info("exchange connect failed uid=%s code=%s", user.id, exc.code)
        raise _failed(exc) from None
    mailbox = activate(svc.store, user, exchange.PROVIDER, result.identity, connection=result.connection(),
                       secrets={exchange.SECRET_PASSWORD: password})
    limits.reset("exchange-connect-login", login_key)  # only this login's: the per-user count stands
    # The password proved the mailbox: from now on the pane's Exchange identity token proves it too.
    confirm_exchange_identity(svc.store, user, sorted(result.identity.addresses()))
    enqueue_sync(mailbox.id, interactive=True)
    log.info("exchange connected uid=%s mid=%s host=%s auth=%s autodiscovered=%s", user.id, mailbox.id,
             urlsplit(result.ews_url).hostname, result.auth_type, result.autodiscovered)
    return jsonify(sync_view(mailbox))
