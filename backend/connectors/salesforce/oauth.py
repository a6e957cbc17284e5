"""Salesforce OAuth 2.0 (web-server flow with PKCE, refresh, revoke) and a user's live credentials.

simple-salesforce has no authorization-code flow, so this module speaks the OAuth endpoints with
``requests`` and hands access tokens to the CRM connector. Vendor errors become domain errors
here: a refused refresh token is :class:`AuthRevoked`, anything else that fails is
:class:`Unavailable`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import requests

from backend.config import Settings
from backend.connectors.errors import AuthRevoked, ServiceMisconfigured, Unavailable
from backend.net.outbound import make_session
from backend.security.crypto import fingerprint

log = logging.getLogger(__name__)
T = TypeVar("T")

# Salesforce's own login and instance domains; anything else must be admitted by configuration.
SALESFORCE_DOMAINS = (
    ".salesforce.com",
    ".force.com",
    ".my.salesforce.com",
    ".salesforce-setup.com",
    ".cloudforce.com",
    ".database.com",
)
ACCESS_TOKEN_CACHE_SECONDS = 90 * 60


class TokenExpired(Exception):
    """The access token was refused; refresh once and retry."""


class LoginHostRefused(ValueError):
    """A login host that is not Salesforce's and not admitted by configuration."""


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint returned."""

    access_token: str
    instance_url: str
    identity_url: str
    refresh_token: str | None = None


@dataclass(frozen=True)
class Identity:
    """The Salesforce user behind a token (from userinfo)."""

    org_id: str
    user_id: str
    username: str
    email: str
    name: str


def pkce_pair() -> tuple[str, str]:
    """A PKCE (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


# One DNS label; a host is two or more of them (no userinfo, path, query, fragment or backslash can
# hide in it, which is what a suffix check alone would let through).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")


def _host_admitted(netloc: str, patterns: tuple[str, ...]) -> bool:
    netloc = netloc.lower()
    for pattern in patterns:
        pattern = pattern.lower().strip()
        if pattern.startswith("*.") and ":" not in netloc and netloc.endswith(pattern[1:]):
            return True
        if netloc == pattern:
            return True
    return False


def is_salesforce_host(settings: Settings, netloc: str) -> bool:
    """True for a Salesforce login or instance host (by domain), or one the configuration admits."""
    netloc = netloc.lower()
    host, _, port = netloc.partition(":")
    if _host_admitted(netloc, settings.SALESFORCE_ALLOWED_HOSTS):
        return True
    if port or not _HOST.match(host):
        return False
    return any(host.endswith(domain) for domain in SALESFORCE_DOMAINS)


def check_salesforce_url(settings: Settings, url: str) -> str:
    """``url`` if it is an https URL on a Salesforce host (or an admitted one); LoginHostRefused otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.username or parts.password or not parts.netloc:
        raise LoginHostRefused(f"{parts.netloc or url} is not a Salesforce address.")
    if not is_salesforce_host(settings, parts.netloc):
        raise LoginHostRefused(f"{parts.netloc} is not a Salesforce domain.")
    return url


def login_url_for(settings: Settings, environment: str, domain: str = "") -> str:
    """The OAuth host for Production, Sandbox or a My Domain; raise LoginHostRefused otherwise."""
    if environment == "production":
        return settings.SALESFORCE_LOGIN_URL
    if environment == "sandbox":
        return settings.SALESFORCE_SANDBOX_URL
    if environment != "mydomain":
        raise LoginHostRefused("Choose Production, Sandbox or My Domain.")
    raw = (domain or "").strip()
    if not raw or len(raw) > 253:
        raise LoginHostRefused("Enter your My Domain, for example acme.my.salesforce.com.")
    if "://" in raw:
        parts = urlsplit(raw)
        if parts.scheme != "https":
            raise LoginHostRefused("My Domain must use https.")
        if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise LoginHostRefused("Enter only the domain name, for example acme.my.salesforce.com.")
        raw = parts.netloc
    netloc = raw.lower()
    # Whatever could end the host part of a URL is refused outright, not parsed around.
    if any(c in netloc for c in "/?#\\@%") or any(c.isspace() for c in netloc):
        raise LoginHostRefused("Enter only the domain name, for example acme.my.salesforce.com.")
    host, _, port = netloc.partition(":")
    if "." not in host:
        host = f"{host}.my.salesforce.com"  # "acme" is how people say their My Domain
        netloc = f"{host}:{port}" if port else host
    if not _HOST.match(host) or (port and not port.isdigit()):
        raise LoginHostRefused(f"{netloc} is not a domain name.")
    if is_salesforce_host(settings, netloc):
        return f"https://{netloc}"
    raise LoginHostRefused(f"{netloc} is not a Salesforce domain.")


def environment_of(settings: Settings, login_url: str) -> str:
    """Which login choice a login URL corresponds to."""
    if login_url == settings.SALESFORCE_LOGIN_URL:
        return "production"
    if login_url == settings.SALESFORCE_SANDBOX_URL:
        return "sandbox"
    return "mydomain"


class SalesforceOAuth:
    """The OAuth endpoints of a Salesforce login host."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)

    @property
    def redirect_uri(self) -> str:
        """Our callback, registered in the connected app."""
        return f"{self.settings.PUBLIC_BASE_URL}/auth/salesforce/callback"

    def authorize_url(self, login_url: str, state: str, code_challenge: str, force_login: bool = False) -> str:
        """Where the dialog sends the person to log in."""
        params = {
            "response_type": "code",
            "client_id": self.settings.SALESFORCE_CLIENT_ID,
            "redirect_uri": self.redirect_uri,
            "state": state,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "scope": "api refresh_token id",
        }
        if force_login:
            params["prompt"] = "login consent"
        return f"{login_url}/services/oauth2/authorize?{urlencode(params)}"

    def _token_call(self, login_url: str, form: dict[str, str]) -> dict[str, Any]:
        form = {
            **form,
            "client_id": self.settings.SALESFORCE_CLIENT_ID,
            "client_secret": self.settings.SALESFORCE_CLIENT_SECRET,
        }
        try:
            resp = self.session.post(f"{login_url}/services/oauth2/token", data=form)
        except requests.RequestException as exc:
            raise Unavailable(f"Salesforce could not be reached ({type(exc).__name__}).") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        error = str(body.get("error", "")) if isinstance(body, dict) else ""
        description = str(body.get("error_description", error))[:200] if isinstance(body, dict) else ""
        if resp.status_code in (400, 401) and error in {"invalid_client", "unauthorized_client"}:
            # Our connected app's credentials were refused (expired secret, app removed): no user can
            # fix that by logging in again, so it must not count against anyone's sync.
            log.error("salesforce refused the connected app: %s", error)
            raise ServiceMisconfigured(f"Salesforce refused this server's app credentials ({error}).")
        if resp.status_code in (400, 401) and error in {"invalid_grant", "inactive_user", "inactive_org"}:
            raise AuthRevoked(f"Salesforce refused the login ({error}: {description}).")
        raise Unavailable(f"Salesforce's token endpoint answered {resp.status_code}.")

    def exchange_code(self, login_url: str, code: str, code_verifier: str) -> TokenSet:
        """Trade an authorization code (with its PKCE verifier) for tokens."""
        body = self._token_call(
            login_url,
            {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
             "code_verifier": code_verifier},
        )
        return self._checked(_token_set(body))

    def _checked(self, tokens: TokenSet) -> TokenSet:
        # The instance receives the access token and answers who the user is: it must be Salesforce.
        try:
            check_salesforce_url(self.settings, tokens.instance_url)
        except LoginHostRefused as exc:
            raise AuthRevoked(f"Salesforce answered with an instance outside Salesforce ({exc}).") from None
        return tokens

    def refresh(self, login_url: str, refresh_token: str) -> TokenSet:
        """A new access token from the refresh token (Salesforce issues no new refresh token)."""
        body = self._token_call(login_url, {"grant_type": "refresh_token", "refresh_token": refresh_token})
        log.info("salesforce token refreshed refresh=%s", fingerprint(refresh_token))
        return self._checked(_token_set(body))

    def revoke(self, login_url: str, token: str) -> None:
        """Revoke a token (logout); failures are ignored: the token is deleted on our side anyway."""
        try:
            self.session.post(f"{login_url}/services/oauth2/revoke", data={"token": token})
        except requests.RequestException:
            log.warning("salesforce revoke failed token=%s", fingerprint(token))

    def userinfo(self, instance_url: str, access_token: str) -> Identity:
        """Who the access token belongs to; TokenExpired when it is refused."""
        try:
            resp = self.session.get(
                f"{instance_url}/services/oauth2/userinfo",
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
        except requests.RequestException as exc:
            raise Unavailable(f"Salesforce could not be reached ({type(exc).__name__}).") from None
        if resp.status_code in (401, 403):
            raise TokenExpired()
        if resp.status_code != 200:
            raise Unavailable(f"Salesforce userinfo answered {resp.status_code}.")
        try:
            data = resp.json()
            return Identity(
                org_id=str(data["organization_id"]),
                user_id=str(data["user_id"]),
                username=str(data.get("preferred_username", "")),
                email=str(data.get("email", "")),
                name=str(data.get("name", "")),
            )
        except (ValueError, KeyError, TypeError):
            raise Unavailable("Salesforce userinfo answered something unexpected.") from None


def _token_set(body: dict[str, Any]) -> TokenSet:
    instance = str(body.get("instance_url", ""))
    if urlsplit(instance).scheme != "https":
        raise Unavailable("Salesforce returned an instance URL that is not https.")
    return TokenSet(
        access_token=str(body["access_token"]),
        instance_url=instance.rstrip("/"),
        identity_url=str(body.get("id", "")),
        refresh_token=str(body["refresh_token"]) if body.get("refresh_token") else None,
    )


class SalesforceCredentials:
    """A user's Salesforce tokens: read from the secret store, refreshed when refused.

    The access token is cached encrypted; a call refused with an expired session refreshes once
    and retries. A refused refresh token raises :class:`AuthRevoked` (the person must log in).
    """

    SECRET_KIND = "user"  # noqa: S105 - a key name
    REFRESH = "sf_refresh"
    ACCESS = "sf_access"

    def __init__(self, oauth: SalesforceOAuth, secrets_store: Any, uid: str, login_url: str, instance_url: str) -> None:
        self.oauth = oauth
        self.secrets = secrets_store
        self.uid = uid
        self.login_url = login_url
        self.instance_url = instance_url
        self.refreshes = 0

    def store_tokens(self, tokens: TokenSet) -> None:
        """Save a fresh token set (encrypted)."""
        if tokens.refresh_token:
            self.secrets.put(self.SECRET_KIND, self.uid, self.REFRESH, tokens.refresh_token)
        self.secrets.put(self.SECRET_KIND, self.uid, self.ACCESS, f"{int(time.time())}|{tokens.access_token}")
        self.instance_url = tokens.instance_url

    def access_token(self) -> str:
        """A cached access token, or a freshly refreshed one."""
        cached = self.secrets.get(self.SECRET_KIND, self.uid, self.ACCESS)
        if cached:
            stamp, _, token = cached.partition("|")
            if token and stamp.isdigit() and time.time() - int(stamp) < ACCESS_TOKEN_CACHE_SECONDS:
                return str(token)
        return self.refresh()

    def refresh(self) -> str:
        """Refresh the access token now."""
        refresh_token = self.secrets.get(self.SECRET_KIND, self.uid, self.REFRESH)
        if not refresh_token:
            raise AuthRevoked("There is no Salesforce login for this user.")
        tokens = self.oauth.refresh(self.login_url, refresh_token)
        self.refreshes += 1
        self.store_tokens(tokens)
        return tokens.access_token

    def call(self, fn: Callable[[str, str], T]) -> T:
        """Run ``fn(instance_url, access_token)``; on TokenExpired refresh once and run it again."""
        try:
            return fn(self.instance_url, self.access_token())
        except TokenExpired:
            token = self.refresh()
            try:
                return fn(self.instance_url, token)
            except TokenExpired:
                raise AuthRevoked("Salesforce refused a freshly refreshed session.") from None

    def forget(self) -> None:
        """Delete the stored tokens (logout or revoked)."""
        self.secrets.delete(self.SECRET_KIND, self.uid, self.REFRESH)
        self.secrets.delete(self.SECRET_KIND, self.uid, self.ACCESS)
