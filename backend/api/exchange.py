"""``POST /api/sync/exchange``: connect an on-premises Exchange mailbox with a login and password.

Order of work, each step before the next:

1. Validate the body (lengths, no control characters, a login that is an email address or
   ``DOMAIN\\user``, an https EWS URL without credentials) - nothing leaves the server for bad input.
2. Refuse an email-form login outside the add-in mailbox's domain (``login_not_allowed``): nobody
   may try another organisation's logins through us. ``DOMAIN\\user`` logins cannot be placed
   in a domain and rely on the limits below.
3. Count the attempt: per Sidebar user (``CONNECT_ATTEMPTS_PER_USER`` per ``CONNECT_WINDOW_SECONDS``),
   per (Sidebar user, target login) (``CONNECT_ATTEMPTS_PER_LOGIN``, the strict limit) and per
   target login across all users (``CONNECT_ATTEMPTS_PER_LOGIN_GLOBAL``, a higher ceiling). The
   ceiling does not apply to the caller's own *verified* add-in address, so others cannot lock a
   person out of their own login. The forms of one account count together: ``alice@acme.example``,
   ``ACME\\alice`` and ``acme.example\\alice`` are all ``acme\\alice`` (the user name with the first
   label of the domain, lower-cased); a NetBIOS name unlike the domain (``SANDBOX\\demo`` for
   ``demo@acme.example``) counts apart, which the per-user limit bounds. Only attempts that sent
   credentials count: one refused before (bad host, unreachable, TLS) is refunded. Any limit
   answers ``rate_limited`` with ``retry_after``. A success clears only the counters of the login
   that succeeded; the per-user count runs out with its window.
4. Prove the credentials and read the mailbox identity (``backend.connectors.exchange.connect``:
   Autodiscover or the given URL, all through the outbound host guard, bounded in time).
5. Check that the mailbox is the add-in's (primary address or alias). A mismatch answers exactly like
   a wrong password (``auth_failed``): otherwise a right password for someone else's login would be
   an oracle, and the answer would name their address.
6. Only then store the password encrypted and activate sync (``backend.sync.activation.activate``),
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
from backend.security.exchange_identity import IssuerHosts
from backend.sync.activation import activate, check_mailbox_match, confirm_exchange_identity, refuse_if_held

log = logging.getLogger(__name__)

CONNECT_ATTEMPTS_PER_LOGIN = 5  # per (Sidebar user, target login)
CONNECT_ATTEMPTS_PER_LOGIN_GLOBAL = 20  # per target login, all Sidebar users together
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
    "locked_by_admin": 403,
    "login_not_allowed": 400,
    "host_not_allowed": 400,
    "auth_failed": 422,
    "mailbox_mismatch": 422,
    "mailbox_unknown": 422,
    "mailbox_not_found": 422,
    "ews_host_unconfirmed": 409,
    "ews_unreachable": 502,
    "not_ews": 502,
    "tls_error": 502,
    "ews_error": 502,
    "timeout": 504,
}


def password_field(data: dict[str, Any]) -> str:
    """The password of a connect body (checked, never logged)."""
    value = data.get("password")
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_input", "Password is required.", field="password")
    if len(value) > MAX_PASSWORD:
        raise ApiError(400, "invalid_input", f"Password is too long (at most {MAX_PASSWORD} characters).",
                       field="password")
    if _CONTROL.search(value):
        raise ApiError(400, "invalid_input", "Password contains characters that are not allowed.", field="password")
    return value  # not stripped: spaces can be part of a password


def login_field(data: dict[str, Any]) -> str:
    """The login of a connect body (checked)."""
    value = text_field(data, "login", max_len=MAX_LOGIN, label="Login")
    if not (is_email(value) or _DOMAIN_LOGIN.match(value)):
        raise ApiError(400, "invalid_input", "Login must be your email address or DOMAIN\\user.", field="login")
    return value


def ews_url_field(data: dict[str, Any]) -> str:
    """The optional EWS URL of a connect body ("" means Autodiscover)."""
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


def _check_login_domain(login: str, addin_mailbox: str) -> None:
    """Refuse an email-form login outside the add-in mailbox's domain, before anything is counted or sent."""
    if "@" not in login or "\\" in login:
        return
    own = addin_mailbox.rpartition("@")[2].lower().rstrip(".")
    if not own:
        raise ApiError(422, "mailbox_unknown", "Open the add-in in the mailbox you want to sync, then try again.")
    if login.rpartition("@")[2].lower().rstrip(".") != own:
        raise ApiError(400, "login_not_allowed", f"Sign in with your own account in {own}.", field="login")


def _is_own_login(login: str, addin_mailbox: str, verified: bool) -> bool:
    """Whether ``login`` is the caller's own proven add-in address (exempt from the global ceiling)."""
    return verified and bool(addin_mailbox) and login.strip().lower() == addin_mailbox.strip().lower()


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


def setup_error(exc: SetupFailed) -> ApiError:
    """A failed Exchange setup as the API's error (its status by code)."""
    status = _STATUS.get(exc.code, 502)
    # ews_host_unconfirmed carries the URL Autodiscover named: the pane shows it, and sending it
    # back as ews_url is the person's confirmation.
    return ApiError(status, exc.code, exc.message, ews_url=getattr(exc, "ews_url", None))


@bp.post("/sync/exchange")
def connect_exchange() -> Response:
    """Connect on-premises Exchange (login, password, optional EWS URL) and activate sync."""
    data = json_body()
    login = login_field(data)
    password = password_field(data)
    ews_url = ews_url_field(data)
    user = current_user()
    _check_login_domain(login, user.addin_mailbox)
    svc = services()
    try:
        refuse_if_held(svc.store, user.id)  # before any attempt is counted or a password sent
    except SetupFailed as exc:
        raise setup_error(exc) from None
    limits = svc.store.ratelimit
    login_key = _login_key(svc.settings.SECRET_KEY, login)
    # Counted first (so concurrent attempts cannot slip past a limit), refunded when nothing was sent.
    counters: list[tuple[str, str]] = []

    def count(name: str, who: str, limit: int, for_login: bool) -> None:
        allowed, retry_after = limits.hit(name, who, limit, CONNECT_WINDOW_SECONDS)
        counters.append((name, who))
        if not allowed:
            refund()
            _rate_limited(retry_after, for_login=for_login)

    def refund() -> None:
        for name, who in counters:
            limits.refund(name, who)

    count("exchange-connect", user.id, CONNECT_ATTEMPTS_PER_USER, for_login=False)
    count("exchange-connect-login", f"{user.id}:{login_key}", CONNECT_ATTEMPTS_PER_LOGIN, for_login=True)
    if not _is_own_login(login, user.addin_mailbox, user.addin_mailbox_verified):
        count("exchange-connect-login-all", login_key, CONNECT_ATTEMPTS_PER_LOGIN_GLOBAL, for_login=True)

    from backend.connectors import exchange  # imported on first use: loads exchangelib

    try:
        result = exchange.connect(svc.settings, login, password, ews_url or None,
                                  email_hint=user.addin_mailbox, resolver=svc.clients.dns_resolver)
        check_mailbox_match(user.addin_mailbox, result.identity)
    except SetupFailed as exc:
        log.info("exchange connect failed uid=%s code=%s", user.id, exc.code)
        if not exc.credentials_sent:
            refund()  # never reached a server that checks passwords: not an attempt on the account
        if exc.code == "mailbox_mismatch":
            # The password was right for someone else's mailbox: answer as for a wrong one (no oracle).
            raise ApiError(_STATUS["auth_failed"], "auth_failed", exchange.AUTH_FAILED_MESSAGE) from None
        raise setup_error(exc) from None
    try:
        mailbox = activate(svc.store, user, exchange.PROVIDER, result.identity, connection=result.connection(),
                           secrets={exchange.SECRET_PASSWORD: password})
    except SetupFailed as exc:  # an administrator's Disable landed meanwhile
        raise setup_error(exc) from None
    # Only this login's counters: the per-user count stands.
    limits.reset("exchange-connect-login", f"{user.id}:{login_key}")
    limits.reset("exchange-connect-login-all", login_key)
    # The password proved the mailbox: from now on the pane's Exchange identity token proves it too.
    # Only when the server that accepted the password speaks for the token's issuer (not any ews_url).
    confirm_exchange_identity(svc.store, IssuerHosts(svc.settings.EXCHANGE_IDENTITY_HOSTS), user,
                              sorted(result.identity.addresses()), result.ews_url)
    enqueue_sync(mailbox.id, interactive=True)
    log.info("exchange connected uid=%s mid=%s host=%s auth=%s autodiscovered=%s", user.id, mailbox.id,
             urlsplit(result.ews_url).hostname, result.auth_type, result.autodiscovered)
    return jsonify(sync_view(mailbox))
