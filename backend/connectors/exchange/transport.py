"""Outbound plumbing for one Exchange connection: guarded sessions, the exchangelib Protocol, retries.

exchangelib creates its own requests sessions (``BaseProtocol.raw_session``) and adapters
(``HTTP_ADAPTER_CLS``), both class-level and process-global. Patching them globally would let one
mailbox's settings (trust, timeout, deadline, request counter, allowed hosts) leak into another's in
a threaded web process. Instead each connection gets its *own* ``Protocol`` subclass whose
``raw_session`` returns a session with a :class:`~backend.net.ssrf.GuardedAdapter`: https only,
connections opened only to addresses the host guard checked, ``OUTBOUND_CA_BUNDLE`` trusted (plus
the public roots) whatever ``REQUESTS_CA_BUNDLE`` says, and counted in :attr:`Transport.calls`. The
protocol instance is created without exchangelib's process-wide protocol cache (which would
otherwise keep every mailbox's credentials alive for the life of the worker). exchangelib does not
follow redirects; our Autodiscover client follows each hop itself through the same guard.

**Time.** Never a hang: each read waits at most ``EWS_TIMEOUT_SECONDS``; each request as a whole
(DNS, connect, TLS, headers, body) at most ``REQUEST_DEADLINE_FACTOR`` times that; and a whole
"Connect to Exchange" attempt at most ``EWS_CONNECT_DEADLINE_SECONDS``. The guarded adapter
enforces the last two by cutting the connection (``shutdown``) when the deadline passes, so a
server that drips a byte at a time cannot hold a web thread or a worker; names are resolved with a
timeout too.

**Retries.** ``FailFast`` (the sync engine owns retries), extended to pass a 503's ``Retry-After``
on as ``ErrorServerBusy.back_off``.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

import requests
from exchangelib import DELEGATE, Account, Configuration, Credentials
from exchangelib import errors as ews_errors
from exchangelib.ewsdatetime import UTC as EWS_UTC
from exchangelib.protocol import FailFast, Protocol
from exchangelib.transport import DEFAULT_HEADERS
from exchangelib.version import Build, Version

from backend.config import Settings
from backend.connectors.exchange.slices import EwsAdapter
from backend.net import GuardedAdapter, HostGuard, RequestBudget, Resolver, guarded_session, mount_guarded
from backend.net.outbound import trust_bundle

# exchangelib's DEBUG records carry request headers (a Basic Authorization header is the password
# in base64) and whole XML bodies (mail content); requests_ntlm/spnego's carry NTLM tokens. Nothing
# below INFO from them may reach our handlers, whatever the root level is.
for _name in ("exchangelib", "requests_ntlm", "spnego"):
    _vendor = logging.getLogger(_name)
    if _vendor.level == logging.NOTSET or _vendor.level < logging.INFO:
        _vendor.setLevel(logging.INFO)

# One request, start to end, may take this many read timeouts (bounds a server dripping bytes).
REQUEST_DEADLINE_FACTOR = 4


def retry_after(response: Any) -> int | None:
    """A response's ``Retry-After`` in whole seconds; None when absent, not positive or not a number."""
    # Read here rather than through exchangelib's private helper; the same rule (delta-seconds only).
    try:
        seconds = int(response.headers.get("Retry-After", "0"))
    except ValueError:
        return None
    return seconds if seconds > 0 else None


class HintedFailFast(FailFast):
    """Fail fast (the engine retries), but keep a 503's ``Retry-After`` as the back-off hint."""

    def raise_response_errors(self, response: Any) -> None:
        """As FailFast, passing ``Retry-After`` on for 503 and server-busy answers."""
        try:
            super().raise_response_errors(response)
        except (ews_errors.ErrorInternalServerTransientError, ews_errors.ErrorServerBusy) as exc:
            hint = retry_after(response)
            if response.status_code == 503 or hint:
                raise ews_errors.ErrorServerBusy(str(exc.args[0] if exc.args else "busy"), back_off=hint) from None
            raise


class Transport:
    """Outbound plumbing for one connection: host guard, trust, timeouts, deadline and request count."""

    def __init__(self, settings: Settings, resolver: Resolver | None = None,
                 deadline_seconds: float | None = None) -> None:
        # A resolver may be injected (split DNS in a deployment, fake DNS in a test); the guard
        # itself is always the real one.
        self.guard = HostGuard(settings.EWS_ALLOWED_HOSTS, resolver=resolver)
        self.verify = trust_bundle(settings.OUTBOUND_CA_BUNDLE)
        self.timeout = float(settings.EWS_TIMEOUT_SECONDS)
        self.deadline = time.monotonic() + deadline_seconds if deadline_seconds else None
        # Shared by every session of this connection: per-request and overall deadlines.
        self.budget = RequestBudget(request_seconds=self.timeout * REQUEST_DEADLINE_FACTOR, deadline=self.deadline)
        self.calls = 0
        # Set before the first request that carries (or answers a challenge with) the credentials.
        self.credentials_sent = False
        self._lock = threading.Lock()

    def left(self) -> float | None:
        """Seconds left for this attempt (None in sync runs, which have no overall deadline)."""
        return self.budget.left()

    def timed_out(self) -> bool:
        """True when the latest request was cut by its deadline, or the attempt's time ran out."""
        return self.budget.timed_out()

    def may_send_credentials(self, url: str, domain: str) -> bool:
        """Whether ``url``'s host may receive the password: in ``domain`` (or under it), or allow-listed."""
        try:
            parts = urlsplit(url)
            host, port = (parts.hostname or "").lower().rstrip("."), parts.port or 443
        except ValueError:
            return False
        if domain and (host == domain or host.endswith("." + domain)):
            return True
        # By name (or a literal address) only: what a foreign name resolves to is its owner's choice.
        return self.guard.admitted(host, port)

    def count(self) -> None:
        """Count one HTTP request (NTLM handshake legs included: each is a request the server serves)."""
        with self._lock:
            self.calls += 1

    def adapter(self, **kwargs: Any) -> GuardedAdapter:
        """A guarded adapter bound to this connection's policy (answers parsed in 64 KiB slices)."""
        return EwsAdapter(self.guard, verify=self.verify, timeout=self.timeout, on_send=self.count,
                              budget=self.budget, **kwargs)

    def session(self) -> requests.Session:
        """A guarded requests session (Autodiscover, probes)."""
        return guarded_session(self.guard, verify=self.verify, timeout=self.timeout, on_send=self.count,
                               budget=self.budget)

    def protocol(self, service_endpoint: str, login: str, password: str, auth_type: str,
                 version: Version | None) -> Protocol:
        """An exchangelib Protocol whose sessions use this transport (and that no cache keeps)."""
        transport = self

        class _SidebarProtocol(Protocol):
            TIMEOUT = transport.timeout
            USERAGENT = "SidebarSync/1"

            @classmethod
            def raw_session(cls, prefix: str, oauth2_client: Any = None, oauth2_session_params: Any = None,
                            oauth2_token_endpoint: Any = None) -> requests.Session:
                # Replaces BaseProtocol.raw_session: same headers, but our guarded adapter on every
                # https URL (exchangelib would mount its own adapter on the endpoint prefix).
                if oauth2_client is not None:
                    raise ValueError("OAuth sessions are not used for on-premises Exchange")
                session = requests.Session()
                session.headers.update(DEFAULT_HEADERS)
                session.headers["User-Agent"] = cls.USERAGENT
                adapter = transport.adapter(pool_block=True, pool_connections=1, pool_maxsize=1, max_retries=0)
                return mount_guarded(session, adapter)

        config = Configuration(
            service_endpoint=service_endpoint,
            credentials=Credentials(login, password),
            auth_type=auth_type,
            version=version,
            retry_policy=HintedFailFast(),
            max_connections=1,
        )
        # type.__call__ skips CachingProtocol.__call__: no process-wide cache entry holding credentials.
        return type.__call__(_SidebarProtocol, config=config)


def account_for(protocol: Protocol, address: str, access_type: str = DELEGATE) -> Account:
    """An exchangelib Account over ``protocol`` (delegate: the login's own mailbox; or impersonation)."""
    account = Account(primary_smtp_address=address, config=protocol.config, autodiscover=False,
                      access_type=access_type, default_timezone=EWS_UTC)
    # Account() registered a plain Protocol in exchangelib's process-wide cache; drop it and use ours.
    with suppress(KeyError):
        del Protocol[protocol.config]
    account.protocol = protocol
    return account


def version_of(text: str | None) -> Version | None:
    """The stored server build (``"15.1.2507.6"``) as an exchangelib Version; None when unreadable."""
    if not text:
        return None
    try:
        parts = [int(p) for p in text.split(".")]
        return Version(build=Build(*[*parts, 0, 0, 0, 0][:4]))
    except (TypeError, ValueError):
        return None


def build_text(version: Version) -> str:
    """A server version as the build text we store (the inverse of :func:`version_of`)."""
    build = version.build
    return f"{build.major_version}.{build.minor_version}.{build.major_build}.{build.minor_build}"
