"""Every setting, read from the environment in one place and checked at start.

Nothing else reads ``os.environ``: code receives a :class:`Settings` (``current_app.extensions["settings"]``
or an argument); tests build one from a mapping. This package imports nothing else from ``backend``: the
syntax checks that stop a start (Fernet keys, host patterns) are pure functions in ``syntax.py``, used by
security and net too.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from backend.config.syntax import fernet_key_problem, parse_host_pattern, parse_identity_host


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line naming it."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be on/off (got {raw!r})")


def _int(name: str, raw: str, minimum: int, maximum: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum} (got {value})")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _https_url(name: str, raw: str) -> str:
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"{name} must be an https URL (got {raw!r})")
    return value


@dataclass(frozen=True)
class Settings:
    """The application's configuration; field names are the environment variable names."""

    SIDEBAR_ENV: str = "production"
    SECRET_KEY: str = ""
    ENCRYPTION_KEYS: tuple[str, ...] = ()
    REDIS_URL: str = ""
    # Every application key starts with this (deployments can share a server; RQ's keys: REDIS_URL's db).
    KEY_PREFIX: str = "ss:"
    PUBLIC_BASE_URL: str = "https://localhost:3000"
    # The Outlook manifest's <Id> (a GUID) Outlook and the admin center know the add-in by: fixed per
    # deployment (a re-rendered manifest updates the same add-in), its own GUID for every other one
    # (staging, a customer's); localhost's is derived from it, so both sideload (backend/manifest.py).
    ADDIN_ID: str = "104bb81e-8e1c-4dc0-8f98-40c72607b407"
    # Extra https origins for the manifest's <AppDomains> (for example an org's Salesforce My Domain,
    # https://acme.my.salesforce.com); the public sign-in hosts are always listed. No wildcards:
    # Office does not accept them in AppDomain values.
    ADDIN_APP_DOMAINS: tuple[str, ...] = ()

    SALESFORCE_CLIENT_ID: str = ""
    SALESFORCE_CLIENT_SECRET: str = ""
    SALESFORCE_LOGIN_URL: str = "https://login.salesforce.com"
    SALESFORCE_SANDBOX_URL: str = "https://test.salesforce.com"
    # Extra login hosts (beyond Salesforce's own domains) a person may type as "My Domain".
    SALESFORCE_ALLOWED_HOSTS: tuple[str, ...] = ()
    SALESFORCE_API_VERSION: str = "62.0"
    SALESFORCE_JWT_PRIVATE_KEY: str = ""  # PEM or a PEM file's path (connectors/salesforce/jwt_bearer)

    MS_CLIENT_ID: str = ""
    MS_CLIENT_SECRET: str = ""
    MS_AUTHORITY: str = "https://login.microsoftonline.com/organizations"
    # Audience of the add-in's Nested App Authentication token (our API's application id URI);
    # the client id itself is also accepted, as Entra issues either form.
    MS_API_AUDIENCE: str = ""
    MS_API_SCOPE: str = "access_as_user"
    # Tenants allowed to use the add-in (empty: any tenant).
    MS_ALLOWED_TENANTS: tuple[str, ...] = ()
    GRAPH_URL: str = "https://graph.microsoft.com"
    # A 429/503 from Graph whose Retry-After is at most this many seconds is waited out within the
    # run; a longer one ends the read with Throttled(retry_after) so the job retries later.
    GRAPH_MAX_WAIT_SECONDS: int = 30
    # Items per delta page (Prefer: odata.maxpagesize); bodies are bounded, so a page stays small.
    GRAPH_PAGE_SIZE: int = 50
    # Instant sync: Graph notifications / Gmail Pub/Sub pushes start runs (PUBLIC_BASE_URL reachable); README.
    PUSH_NOTIFICATIONS: bool = False
    PUSH_DEBOUNCE_SECONDS: int = 10
    PUSH_CHECK_SECONDS: int = 60
    GOOGLE_PUBSUB_TOPIC: str = ""
    GOOGLE_PUBSUB_PUSH_ACCOUNT: str = ""
    GOOGLE_PUBSUB_AUDIENCE: str = ""
    GOOGLE_CERTS_URL: str = "https://www.googleapis.com/oauth2/v3/certs"

    GOOGLE_CLIENT_ID: str = ""
    GOOGLE_CLIENT_SECRET: str = ""
    GOOGLE_AUTH_URL: str = "https://accounts.google.com/o/oauth2/v2/auth"
    GOOGLE_TOKEN_URL: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL
    GMAIL_API_URL: str = "https://gmail.googleapis.com"
    GOOGLE_CALENDAR_API_URL: str = "https://www.googleapis.com/calendar/v3"
    # Where a refresh token we will not keep (a mismatched mailbox) is revoked at once.
    GOOGLE_REVOKE_URL: str = "https://oauth2.googleapis.com/revoke"
    # A 429/403 rate limit from Gmail or Calendar whose Retry-After is at most this many seconds is
    # waited out within the run; a longer one ends the read with Throttled(retry_after).
    GOOGLE_MAX_WAIT_SECONDS: int = 30

    OUTBOUND_CA_BUNDLE: str = ""
    OUTBOUND_TIMEOUT_SECONDS: int = 20
    EWS_ALLOWED_HOSTS: tuple[str, ...] = ()
    # EWS (on-premises Exchange): one request's time, and a whole "Connect to Exchange" attempt's
    # (Autodiscover, probes, checks), under the 30 s proxies in front of the web commonly allow.
    EWS_TIMEOUT_SECONDS: int = 15
    EWS_CONNECT_DEADLINE_SECONDS: int = 25
    # Autodiscover (POX) endpoints tried in order without an EWS URL ("{domain}": the mailbox's); each
    # passes the outbound host guard, and gets the password only in the login's domain or EWS_ALLOWED_HOSTS.
    # autodiscover.{domain} first: the bare domain is often a website run by someone else.
    EWS_AUTODISCOVER_URLS: tuple[str, ...] = (
        "https://autodiscover.{domain}/autodiscover/autodiscover.xml",
        "https://{domain}/autodiscover/autodiscover.xml",
    )
    # Hosts (patterns as in EWS_ALLOWED_HOSTS) whose Exchange identity tokens are trusted for any
    # add-in mailbox; without a match, the token's metadata host must be in the mailbox's domain.
    EXCHANGE_IDENTITY_HOSTS: tuple[str, ...] = ()
    REQUIRE_MAILBOX_PROOF: bool = True

    SMTP_URL: str = ""
    MAIL_FROM: str = ""

    SYNC_INTERVAL_SECONDS: int = 1800
    BACKFILL_DAYS: int = 6
    MAX_AUTH_FAILURES: int = 6
    SF_API_BUDGET_PERCENT: int = 80
    # Items a run writes per batch (cursors saved after each): 800 emails are two full write calls,
    # whose free query slots carry the next batch's look-ups (no look-up call after the first).
    SYNC_BATCH_ITEMS: int = 800
    # Waits (seconds) before retrying a run that failed on a transient error (Retry-After wins
    # when longer); after the last one the next scheduled run tries again.
    SYNC_RETRY_SECONDS: tuple[str, ...] = ("30", "120", "600")
    # A run's deadline: the sync job's RQ timeout, past which the run is stopped (recorded as
    # "timeout") and retried. A run reads at most a few thousand items; longer is stuck, not slow.
    SYNC_RUN_DEADLINE_SECONDS: int = 20 * 60
    # One Salesforce write call's timeout (Composite, up to 1,000 records on a busy org); reads use
    # OUTBOUND_TIMEOUT_SECONDS. Shorter than the run's deadline, so a slow write ends as itself.
    SALESFORCE_WRITE_TIMEOUT_SECONDS: int = 180
    # Custom text field (External ID, unique, 255) on Activity that holds our dedup key: the
    # meeting's iCalendar UID on Events, the Message-ID on email Tasks (orgs without Enhanced Email).
    SF_ACTIVITY_KEY_FIELD: str = "Sidebar_Sync_Key__c"

    # A bearer token's absolute lifetime; its session also ends after API_SESSION_IDLE_SECONDS
    # without a request, and at once when Salesforce refuses the login it came from (checked on
    # every authenticated request, the answer cached SALESFORCE_CHECK_SECONDS).
    API_TOKEN_TTL_SECONDS: int = 24 * 3600
    API_SESSION_IDLE_SECONDS: int = 8 * 3600
    SALESFORCE_CHECK_SECONDS: int = 60
    LOG_LEVEL: str = "INFO"
    # ``text`` for development; ``json``: one object a line (backend/observability/logs.py).
    LOG_FORMAT: str = "text"
    # Bearer token GET /metrics requires; unset, /metrics answers 404.
    METRICS_TOKEN: str = ""

    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def development(self) -> bool:
        """True when running on a developer's machine (relaxed requirements)."""
        return self.SIDEBAR_ENV == "development"

    @property
    def salesforce_configured(self) -> bool:
        """True when the Salesforce connected app is set."""
        return bool(self.SALESFORCE_CLIENT_ID and self.SALESFORCE_CLIENT_SECRET)

    @property
    def microsoft_configured(self) -> bool:
        """True when the Entra ID application is set."""
        return bool(self.MS_CLIENT_ID and self.MS_CLIENT_SECRET)

    @property
    def google_configured(self) -> bool:
        """True when the Google OAuth client is set."""
        return bool(self.GOOGLE_CLIENT_ID and self.GOOGLE_CLIENT_SECRET)

    @property
    def public_host(self) -> str:
        """The host[:port] of PUBLIC_BASE_URL."""
        return urlsplit(self.PUBLIC_BASE_URL).netloc

    @classmethod
    def load(cls, source: Mapping[str, Any]) -> Settings:
        """Build settings from a mapping of environment-style names; raise ConfigError when invalid."""
        known = {f.name for f in fields(cls)} - {"extra"}
        raw: dict[str, Any] = {}
        for name in known:
            if name in source and source[name] is not None:
                raw[name] = source[name]
        extra = {k: v for k, v in source.items() if k not in known}
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra" or f.name not in raw:
                continue
            value = raw[f.name]
            values[f.name] = _coerce(f.name, f.default, value)
        env = str(values.get("SIDEBAR_ENV", cls.SIDEBAR_ENV)).strip().lower()
        if env not in {"production", "development"}:
            raise ConfigError(f"SIDEBAR_ENV must be production or development (got {env!r})")
        values["SIDEBAR_ENV"] = env
        if "REQUIRE_MAILBOX_PROOF" not in raw:
            values["REQUIRE_MAILBOX_PROOF"] = env == "production"
        settings = cls(**values, extra=extra)
        settings.check()
        return settings

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the process environment."""
        return cls.load(os.environ if environ is None else environ)

    def check(self) -> None:
        """Refuse to start with a configuration that is missing or unsafe (one line, naming it)."""
        if not self.development:
            missing = [
                name
                for name in (
                    "SECRET_KEY",
                    "ENCRYPTION_KEYS",
                    "REDIS_URL",
                    "SALESFORCE_CLIENT_ID",
                    "SALESFORCE_CLIENT_SECRET",
                )
                if not getattr(self, name)
            ]
            if missing:
                raise ConfigError(
                    "missing required setting(s) for production: " + ", ".join(missing)
                )
            if len(self.SECRET_KEY) < 32:
                raise ConfigError("SECRET_KEY must be at least 32 characters in production")
        for name in ("PUBLIC_BASE_URL", "SALESFORCE_LOGIN_URL", "SALESFORCE_SANDBOX_URL",
                     "MS_AUTHORITY", "GRAPH_URL", "GOOGLE_AUTH_URL", "GOOGLE_TOKEN_URL",
                     "GMAIL_API_URL", "GOOGLE_CALENDAR_API_URL", "GOOGLE_REVOKE_URL", "GOOGLE_CERTS_URL"):
            _https_url(name, getattr(self, name))
        if self.ENCRYPTION_KEYS:
            problem = fernet_key_problem(self.ENCRYPTION_KEYS)
            if problem is not None:
                raise ConfigError(f"ENCRYPTION_KEYS: {problem}")
        if self.OUTBOUND_CA_BUNDLE and not os.path.isfile(self.OUTBOUND_CA_BUNDLE):
            raise ConfigError(f"OUTBOUND_CA_BUNDLE is not a readable file: {self.OUTBOUND_CA_BUNDLE}")
        if self.LOG_FORMAT not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json (got {self.LOG_FORMAT!r})")
        if self.SMTP_URL and not self.MAIL_FROM:
            raise ConfigError("MAIL_FROM is required when SMTP_URL is set")
        try:
            uuid.UUID(self.ADDIN_ID)
        except ValueError:
            raise ConfigError(f"ADDIN_ID must be a GUID (got {self.ADDIN_ID!r})") from None
        for origin in self.ADDIN_APP_DOMAINS:
            parts = urlsplit(origin)
            if (parts.scheme != "https" or not parts.hostname or "*" in origin
                    or parts.path not in ("", "/") or parts.query or parts.fragment):
                raise ConfigError(f"ADDIN_APP_DOMAINS entries must be https origins without wildcards (got {origin!r})")
        if self.SYNC_RUN_DEADLINE_SECONDS <= self.SALESFORCE_WRITE_TIMEOUT_SECONDS:
            # Else every slow write would be cut by the run's deadline, never by its own timeout.
            raise ConfigError(f"SYNC_RUN_DEADLINE_SECONDS ({self.SYNC_RUN_DEADLINE_SECONDS}) must be longer than "
                              f"SALESFORCE_WRITE_TIMEOUT_SECONDS ({self.SALESFORCE_WRITE_TIMEOUT_SECONDS})")
        retry = self.SYNC_RETRY_SECONDS
        if not retry or not all(v.isdigit() and 0 <= int(v) <= 86400 for v in retry):
            raise ConfigError("SYNC_RETRY_SECONDS must be a comma list of waits in seconds, e.g. 30,120,600")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,79}", self.SF_ACTIVITY_KEY_FIELD):
            # It is written into SOQL statements: an API name, nothing else.
            raise ConfigError("SF_ACTIVITY_KEY_FIELD must be a Salesforce field API name, e.g. Sidebar_Sync_Key__c")
        if not self.KEY_PREFIX or any(c.isspace() for c in self.KEY_PREFIX):
            raise ConfigError("KEY_PREFIX must be a non-empty string without spaces")
        for pattern in self.EWS_ALLOWED_HOSTS:
            try:
                parse_host_pattern(pattern)
            except ValueError as exc:
                raise ConfigError(f"EWS_ALLOWED_HOSTS: {exc}") from None
        for entry in self.EXCHANGE_IDENTITY_HOSTS:
            try:
                parse_identity_host(entry)
            except ValueError as exc:
                raise ConfigError(f"EXCHANGE_IDENTITY_HOSTS: {exc}") from None
        for template in self.EWS_AUTODISCOVER_URLS:
            if not template.lower().startswith("https://"):
                raise ConfigError(f"EWS_AUTODISCOVER_URLS must hold https URLs (got {template!r})")


_LIMITS: dict[str, tuple[int, int]] = {
    "SYNC_BATCH_ITEMS": (1, 10_000),
    "SYNC_INTERVAL_SECONDS": (60, 7 * 24 * 3600),
    "BACKFILL_DAYS": (0, 365),
    "MAX_AUTH_FAILURES": (1, 1000),
    "SF_API_BUDGET_PERCENT": (1, 100),
    "API_TOKEN_TTL_SECONDS": (60, 90 * 24 * 3600),
    "API_SESSION_IDLE_SECONDS": (1, 90 * 24 * 3600),
    "SALESFORCE_CHECK_SECONDS": (1, 3600),
    "OUTBOUND_TIMEOUT_SECONDS": (1, 600),
    "SYNC_RUN_DEADLINE_SECONDS": (1, 24 * 3600),
    "SALESFORCE_WRITE_TIMEOUT_SECONDS": (1, 3600),
    "GRAPH_MAX_WAIT_SECONDS": (0, 600),
    "GRAPH_PAGE_SIZE": (1, 1000),
}


def _coerce(name: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool):
        return value if isinstance(value, bool) else _bool(name, str(value))
    if isinstance(default, int):
        low, high = _LIMITS.get(name, (0, 2**31))
        return _int(name, str(value), low, high)
    if isinstance(default, tuple):
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value if str(v).strip())
        return _list(str(value))
    text = str(value).strip()
    if name.endswith("_URL") or name in {"MS_AUTHORITY", "PUBLIC_BASE_URL"}:
        text = text.rstrip("/")
    return text
