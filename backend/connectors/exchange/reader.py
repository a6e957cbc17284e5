"""On-premises Exchange through EWS (exchangelib 5.6): connecting a mailbox, and reading its changes.

Two entry points:

* :func:`connect` (used by ``POST /api/sync/exchange``) proves a login and password: it finds the
  EWS endpoint (the given URL, or Autodiscover), checks the host with the outbound guard, learns the
  server's authentication method (one unauthenticated POST: ``401`` + ``WWW-Authenticate``) and
  version (exchangelib's ConvertId probe, the first authenticated call), then resolves the
  mailbox's primary SMTP address and aliases with ResolveNames. Every failure becomes
  ``SetupFailed(code, message)`` with a code the task pane shows (``auth_failed``,
  ``ews_unreachable``, ``host_not_allowed``, ``not_ews``, ``tls_error``, ``timeout``,
  ``ews_error``, ``mailbox_not_found``). Nothing is stored here; the caller activates on success.
* :func:`open_mailbox` (through ``backend.connectors.PROVIDERS``) builds :class:`ExchangeMailbox`,
  the Mailbox protocol over the stored connection (auth method and version are stored, so a run
  makes no probe calls).

**Transport.** exchangelib creates its own requests sessions (``BaseProtocol.raw_session``) and
adapters (``HTTP_ADAPTER_CLS``), both class-level and process-global. Patching them globally would
let one mailbox's settings (trust, timeout, deadline, request counter, allowed hosts) leak into
another's in a threaded web process. Instead each connection gets its *own* ``Protocol`` subclass
whose ``raw_session`` returns a session with a :class:`~backend.net.ssrf.GuardedAdapter`:
https only, connections opened only to addresses the host guard checked, ``OUTBOUND_CA_BUNDLE``
trusted (plus the public roots) whatever ``REQUESTS_CA_BUNDLE`` says, and counted in
:attr:`ExchangeMailbox.calls`. The protocol instance is created without exchangelib's
process-wide protocol cache (which would otherwise keep every mailbox's credentials alive for the
life of the worker). exchangelib does not follow redirects; our Autodiscover client follows each hop
itself through the same guard.

**Time.** Never a hang: each read waits at most ``EWS_TIMEOUT_SECONDS``; each request as a whole
(DNS, connect, TLS, headers, body) at most ``REQUEST_DEADLINE_FACTOR`` times that; and a whole
"Connect to Exchange" attempt at most ``EWS_CONNECT_DEADLINE_SECONDS``. The guarded adapter
enforces the last two by cutting the connection (``shutdown``) when the deadline passes, so a
server that drips a byte at a time cannot hold a web thread or a worker; names are resolved with
a timeout too. A cut attempt answers ``timeout``; a cut request in a sync run is ``Unavailable``.

**Where the password goes.** Only to the EWS URL the person typed, to Autodiscover hosts in the
login's own domain (the domain itself or a subdomain; for ``DOMAIN\\user`` the add-in mailbox's
domain) or listed in ``EWS_ALLOWED_HOSTS``, and to the EWS URL such an Autodiscover answer names.
Autodiscover hops (HTTP redirects, ``redirectUrl``) to any other host are not followed at all, and
``redirectAddr`` is followed only within the same domain: another organisation's Autodiscover would
need our credentials on its hosts. Candidates are tried ``autodiscover.{domain}`` first: the bare
domain is often a website run by someone else. Basic is never offered to a host outside that set
(everything we contact there is in it).

**Which mailbox.** With an email address as login, the mailbox is the ResolveNames entry with that
exact address. With ``DOMAIN\\user``, ResolveNames matches loosely (a display-name prefix is
enough) and can name someone else's mailbox, so a candidate counts only if it is the signed-in
account's own: its Inbox must be the Inbox the server opens for us when no mailbox is named (one
GetFolder call for all candidates). Otherwise ``mailbox_not_found`` asks for the email address.

**Errors.** ``FailFast`` retry policy (the sync engine owns retries), extended to pass a 503's
``Retry-After`` on. At the boundary: rejected credentials -> ``AuthRevoked``; ``ErrorServerBusy``
(its ``BackOffMilliseconds``) and 503 (its ``Retry-After``) -> ``Throttled``; connection failures,
timeouts, TLS failures and other server errors -> ``Unavailable``; an invalid sync state is handled
here (see below). Vendor exception texts can hold server responses, so messages are our own.

**Reading changes.** Each folder (Inbox, Sent Items, Calendar) is read with SyncFolderItems, at most
512 changes a call, one :class:`ChangePage` per call with the sync state valid after it, until
``IncludesLastItemInRange``. SyncFolderItems cannot return bodies, so each call asks only for ids
plus the dates it needs to filter (``DateTimeReceived``/``DateTimeSent``; ``Start``/``End``/
``CalendarItemType``) and GetItem then fetches the full items that pass, in chunks.

*The bounded first run.* SyncFolderItems cannot filter by date, and a first sync without a state
enumerates the whole folder. We chose to walk that enumeration with the id-and-date shape above and
keep only items inside the window (mail received since ``mail_since``; events overlapping
``events_from``..``events_to``), rather than an id-only sync to the end followed by a FindItem
restricted to the window: it costs the same SyncFolderItems calls (the ids must be walked either
way to reach a current state), needs no extra FindItem calls, and has no gap or overlap between
"state taken" and "window listed", because the listing *is* the sync. Bodies are fetched only for
the window. The window's lower bound is kept in the cursor (``ews1|floor|ceiling|state``) and keeps
applying afterwards: a later change to a message older than the first run's window (a flag, a
move) is not reported as new mail, and a run that resumes a half-finished first sync keeps
filtering. The calendar's upper bound (the ceiling) only applies until the first pass has caught
up; meetings created later far in the future are reported when they appear.

*Expired cursors.* ``ErrorInvalidSyncStateData`` (or a cursor we cannot read) restarts that folder
from the current window, once per run, and its pages say ``resynced=True``. Items re-read that way
are limited to the window and repeat only what may already be in Salesforce, where the engine
dedups by Message-ID / UID.

Recurring series are reported as their master (``is_recurring``, the first occurrence's times, the
UID as dedup key); Exchange keeps exceptions inside the master, so a changed occurrence shows up as
an update of the series. ResolveNames reports at most three addresses per user (Exchange's
``EmailAddress1..3``), so more aliases than that are not seen.
"""

from __future__ import annotations

import html
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import requests_ntlm
from exchangelib import DELEGATE, Account, Configuration, Credentials
from exchangelib import errors as ews_errors
from exchangelib.ewsdatetime import UTC as EWS_UTC
from exchangelib.fields import FieldPath
from exchangelib.folders import Calendar, Inbox, SentItems
from exchangelib.items import ID_ONLY, CalendarItem, Message
from exchangelib.properties import DistinguishedFolderId
from exchangelib.properties import Mailbox as EwsMailbox
from exchangelib.protocol import FailFast, Protocol
from exchangelib.services import GetFolder, GetItem, SyncFolderItems
from exchangelib.transport import BASIC, DEFAULT_HEADERS, NTLM
from exchangelib.util import TNS, _get_retry_after, add_xml_child, create_element
from exchangelib.version import EXCHANGE_2013, Build, Version
from lxml import etree

from backend.config import Settings
from backend.connectors import MailboxContext
from backend.connectors.errors import (
    AuthRevoked,
    ConnectorError,
    CursorExpired,
    SetupFailed,
    Throttled,
    Unavailable,
)
from backend.connectors.mailbox import (
    FOLDERS,
    MAX_RECIPIENTS,
    Address,
    ChangePage,
    Deletion,
    EmailItem,
    EventItem,
    Folder,
    MailboxIdentity,
    Sensitivity,
    SyncWindow,
    bound_text,
    normalise_message_id,
)
from backend.net.outbound import trust_bundle
from backend.net.ssrf import (
    GuardedAdapter,
    HostGuard,
    HostNotAllowed,
    RequestBudget,
    guarded_session,
    mount_guarded,
)

log = logging.getLogger(__name__)

# exchangelib's DEBUG records carry request headers (a Basic Authorization header is the password
# in base64) and whole XML bodies (mail content); requests_ntlm/spnego's carry NTLM tokens. Nothing
# below INFO from them may reach our handlers, whatever the root level is.
for _name in ("exchangelib", "requests_ntlm", "spnego"):
    _vendor = logging.getLogger(_name)
    if _vendor.level == logging.NOTSET or _vendor.level < logging.INFO:
        _vendor.setLevel(logging.INFO)

PROVIDER = "exchange"
SECRET_PASSWORD = "exchange_password"  # noqa: S105 - the secret's name, not a secret
MAX_CHANGES = 512  # SyncFolderItems' maximum per call
GET_ITEM_CHUNK = 64  # items per GetItem call: full bodies, so keep requests moderate
MAX_AUTODISCOVER_HOPS = 5
MAX_AUTODISCOVER_BYTES = 512 * 1024
EWS_PATH = "/EWS/Exchange.asmx"
CURSOR_PREFIX = "ews1"
DEFAULT_THROTTLE_SECONDS = 60.0
# One request, start to end, may take this many read timeouts (bounds a server dripping bytes).
REQUEST_DEADLINE_FACTOR = 4
# ResolveNames candidates checked against the signed-in account's own mailbox (one GetFolder call).
MAX_IDENTITY_CANDIDATES = 10
_AUTH_NAMES = {NTLM: "NTLM", BASIC: "basic"}

_NS_AD_REQ = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
_NS_AD_OUT = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
_AUTODISCOVER_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<Autodiscover xmlns="{_NS_AD_REQ}"><Request><EMailAddress>{{email}}</EMailAddress>'
    f"<AcceptableResponseSchema>{_NS_AD_OUT}</AcceptableResponseSchema></Request></Autodiscover>"
)
# A minimal, valid EWS request for the authentication probe; servers answer it with 401 first.
_PROBE_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    '<s:Header><t:RequestServerVersion Version="Exchange2013"/></s:Header>'
    '<s:Body><m:ResolveNames ReturnFullContactData="false"><m:UnresolvedEntry>probe</m:UnresolvedEntry>'
    "</m:ResolveNames></s:Body></s:Envelope>"
)
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_TAGS = re.compile(r"<[^>]+>")
_SENSITIVITY = {
    "normal": Sensitivity.NORMAL,
    "personal": Sensitivity.PERSONAL,
    "private": Sensitivity.PRIVATE,
    "confidential": Sensitivity.CONFIDENTIAL,
}
_STATUS = re.compile(r"Code: (\d{3})")

_MAIL_SYNC_FIELDS = ("datetime_received", "datetime_sent")
_EVENT_SYNC_FIELDS = ("start", "end", "type")
_MAIL_FIELDS = ("subject", "sensitivity", "datetime_received", "datetime_sent", "is_draft", "author", "sender",
                "to_recipients", "cc_recipients", "message_id")
_EVENT_FIELDS = ("uid", "subject", "sensitivity", "start", "end", "is_all_day", "location", "is_cancelled",
                 "is_recurring", "type", "organizer", "required_attendees", "optional_attendees", "recurrence")


# ---- transport --------------------------------------------------------------------------------------
class _HintedFailFast(FailFast):
    """Fail fast (the engine retries), but keep a 503's ``Retry-After`` as the back-off hint."""

    def raise_response_errors(self, response: Any) -> None:
        """As FailFast, passing ``Retry-After`` on for 503 and server-busy answers."""
        try:
            super().raise_response_errors(response)
        except (ews_errors.ErrorInternalServerTransientError, ews_errors.ErrorServerBusy) as exc:
            hint = _get_retry_after(response)
            if response.status_code == 503 or hint:
                raise ews_errors.ErrorServerBusy(str(exc.args[0] if exc.args else "busy"), back_off=hint) from None
            raise


class _Transport:
    """Outbound plumbing for one connection: host guard, trust, timeouts, deadline and request count."""

    def __init__(self, settings: Settings, clients: Mapping[str, Any] | None = None,
                 deadline_seconds: float | None = None) -> None:
        clients = clients or {}
        # A test may inject a resolver (fake DNS); the guard itself is always the real one.
        self.guard = HostGuard(settings.EWS_ALLOWED_HOSTS, resolver=clients.get("dns_resolver"))
        self.verify = trust_bundle(settings.OUTBOUND_CA_BUNDLE)
        self.timeout = float(settings.EWS_TIMEOUT_SECONDS)
        self.deadline = time.monotonic() + deadline_seconds if deadline_seconds else None
        # Shared by every session of this connection: per-request and overall deadlines.
        self.budget = RequestBudget(request_seconds=self.timeout * REQUEST_DEADLINE_FACTOR, deadline=self.deadline)
        self.calls = 0
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
        """A guarded adapter bound to this connection's policy."""
        return GuardedAdapter(self.guard, verify=self.verify, timeout=self.timeout, on_send=self.count,
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
            retry_policy=_HintedFailFast(),
            max_connections=1,
        )
        # type.__call__ skips CachingProtocol.__call__: no process-wide cache entry holding credentials.
        return type.__call__(_SidebarProtocol, config=config)


def _account(protocol: Protocol, address: str) -> Account:
    """An exchangelib Account over ``protocol`` (delegate access: the login's own mailbox)."""
    account = Account(primary_smtp_address=address, config=protocol.config, autodiscover=False,
                      access_type=DELEGATE, default_timezone=EWS_UTC)
    # Account() registered a plain Protocol in exchangelib's process-wide cache; drop it and use ours.
    with suppress(KeyError):
        del Protocol[protocol.config]
    account.protocol = protocol
    return account


def _version_of(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        parts = [int(p) for p in text.split(".")]
        return Version(build=Build(*[*parts, 0, 0, 0, 0][:4]))
    except (TypeError, ValueError):
        return None


def _build_text(version: Version) -> str:
    build = version.build
    return f"{build.major_version}.{build.minor_version}.{build.major_build}.{build.minor_build}"


# ---- error translation ------------------------------------------------------------------------------
def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _network_kind(exc: BaseException) -> str | None:
    """'tls', 'timeout' or 'connect' when a network failure is behind ``exc``."""
    # Judged by exception types along the chain only: vendor messages can quote server responses.
    chain = _chain(exc)
    if any(isinstance(e, requests.exceptions.SSLError | ssl.SSLError) for e in chain):
        return "tls"
    if any(isinstance(e, requests.exceptions.Timeout | TimeoutError) for e in chain):
        return "timeout"
    if any(isinstance(e, requests.exceptions.ConnectionError | ConnectionError) for e in chain):
        return "connect"
    if isinstance(exc, ews_errors.ErrorTimeoutExpired):
        return "connect"
    return None


def _translate(exc: BaseException) -> ConnectorError:
    """A vendor error from a sync run as a domain error."""
    if isinstance(exc, ConnectorError) and not isinstance(exc, SetupFailed):
        return exc
    if isinstance(exc, HostNotAllowed):
        # The stored host now resolves to a refused address: no data flows; a later run may work.
        return Unavailable("The Exchange server's address is not allowed any more; sync waits until it is.")
    if isinstance(exc, ews_errors.UnauthorizedError | ews_errors.ErrorAccessDenied
                  | ews_errors.ErrorNonExistentMailbox):
        return AuthRevoked("Exchange no longer accepts the saved login and password.")
    if isinstance(exc, ews_errors.ErrorServerBusy):
        return Throttled("Exchange is busy and asked us to wait.",
                         retry_after=float(exc.back_off or DEFAULT_THROTTLE_SECONDS))
    if isinstance(exc, ews_errors.RateLimitError):
        return Throttled("Exchange is busy and asked us to wait.", retry_after=float(exc.wait))
    kind = _network_kind(exc)
    if kind == "tls":
        return Unavailable("The Exchange server's certificate is not trusted or has expired.")
    if kind == "timeout":
        return Unavailable("The Exchange server did not answer in time.")
    if kind == "connect":
        return Unavailable("The Exchange server could not be reached.")
    log.warning("exchange error %s", type(exc).__name__)
    return Unavailable(f"Exchange answered with an error ({type(exc).__name__}).")


_TIMEOUT_MESSAGE = ("The Exchange server did not answer in time. Try again later, or check the EWS URL under "
                    "More.")


def _setup_error(exc: BaseException, timed_out: bool = False) -> SetupFailed:
    """A failure while connecting as a code and message for the person (``timed_out``: the deadline cut it)."""
    if timed_out and (not isinstance(exc, SetupFailed) or exc.code == "ews_unreachable"):
        # A cut connection surfaces as a dropped connection or a truncated body: say what happened.
        return SetupFailed("timeout", _TIMEOUT_MESSAGE)
    if isinstance(exc, SetupFailed):
        return exc
    if isinstance(exc, ews_errors.UnauthorizedError):
        if "locked out" in str(exc):
            return SetupFailed("auth_failed", "Exchange says this account is locked out. Ask your administrator.")
        return SetupFailed("auth_failed", "Exchange did not accept this login and password. Check them and try again.")
    kind = _network_kind(exc)
    if kind == "tls":
        return SetupFailed("tls_error", "The Exchange server's certificate is expired or not trusted, so we did "
                                        "not send your password. Ask your administrator.")
    if kind == "timeout":
        return SetupFailed("timeout", _TIMEOUT_MESSAGE)
    if kind == "connect":
        return SetupFailed("ews_unreachable", "We could not reach the Exchange server. Check the address, or "
                                              "enter the EWS URL under More.")
    if isinstance(exc, ews_errors.ErrorServerBusy | ews_errors.RateLimitError):
        return SetupFailed("ews_error", "Exchange is busy right now. Try again in a few minutes.")
    if isinstance(exc, ews_errors.MalformedResponseError):
        status = _STATUS.search(str(exc))
        if status and status.group(1).startswith("5"):
            return SetupFailed("ews_error", f"The Exchange server answered with an error (HTTP {status.group(1)}). "
                                            "Try again later.")
        return SetupFailed("not_ews", "This address answered, but not as Exchange Web Services. Check the EWS "
                                      "URL (it usually ends in /EWS/Exchange.asmx).")
    if isinstance(exc, ews_errors.SOAPError | ews_errors.TransportError | etree.XMLSyntaxError) and not isinstance(
        exc, ews_errors.ResponseMessageError
    ):
        return SetupFailed("not_ews", "This address answered, but not as Exchange Web Services. Check the EWS "
                                      "URL (it usually ends in /EWS/Exchange.asmx).")
    log.warning("exchange connect error %s", type(exc).__name__)
    return SetupFailed("ews_error", "The Exchange server answered with an error. Try again later.")


# ---- connecting ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExchangeConnection:
    """What a successful connect learned (no secret in it)."""

    identity: MailboxIdentity
    login: str
    ews_url: str
    auth_type: str  # exchangelib's name: "NTLM" or "basic"
    version: str  # server build, e.g. "15.1.2507.6"
    autodiscovered: bool
    calls: int = 0

    def connection(self) -> dict[str, Any]:
        """The non-secret details ``activate`` stores and :func:`open_mailbox` reads."""
        return {
            "login": self.login,
            "ews_url": self.ews_url,
            "auth_type": self.auth_type,
            "version": self.version,
            "autodiscovered": self.autodiscovered,
        }


def normalise_ews_url(url: str) -> str:
    """An EWS URL as we store it: https, no fragment; a bare host gets ``/EWS/Exchange.asmx``."""
    parts = urlsplit(url.strip())
    path = parts.path if parts.path not in ("", "/") else EWS_PATH
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def connect(
    settings: Settings,
    login: str,
    password: str,
    ews_url: str | None = None,
    *,
    email_hint: str = "",
    clients: Mapping[str, Any] | None = None,
) -> ExchangeConnection:
    """Prove ``login``/``password`` against Exchange and read the mailbox identity (SetupFailed otherwise).

    ``email_hint`` (the add-in mailbox) is used for Autodiscover when the login is ``DOMAIN\\user``.
    Time is bounded by ``EWS_CONNECT_DEADLINE_SECONDS`` in total.
    """
    transport = _Transport(settings, clients, deadline_seconds=settings.EWS_CONNECT_DEADLINE_SECONDS)
    protocol: Protocol | None = None
    try:
        autodiscovered = not ews_url
        if ews_url:
            url = normalise_ews_url(ews_url)
        else:
            url = _autodiscover(transport, settings, login, password, email_hint)
        _precheck(transport, url)
        auth_type = _probe_auth(transport, url)
        protocol = transport.protocol(url, login, password, auth_type, None)
        version = protocol.version  # exchangelib's version probe: the first authenticated request
        identity = resolve_identity(protocol, login)
        return ExchangeConnection(identity=identity, login=login, ews_url=url, auth_type=auth_type,
                                  version=_build_text(version), autodiscovered=autodiscovered, calls=transport.calls)
    except Exception as exc:  # noqa: BLE001 - every failure must become a specific answer, never a 500
        raise _setup_error(exc, transport.timed_out()) from None
    finally:
        if protocol is not None:
            protocol.close()


def _precheck(transport: _Transport, url: str) -> None:
    """Refuse a host before sending anything (the connection checks again when it opens)."""
    try:
        transport.guard.check(url, timeout=transport.left())
    except socket.gaierror:
        raise SetupFailed("ews_unreachable", f"The server {urlsplit(url).hostname} was not found. Check the "
                                             "address, or enter the EWS URL under More.") from None


def _probe_auth(transport: _Transport, url: str) -> str:
    """One unauthenticated POST: which method the server asks for (it must look like EWS)."""
    session = transport.session()
    try:
        response = session.post(url, data=_PROBE_REQUEST.encode(), allow_redirects=False,
                                headers={"Content-Type": "text/xml; charset=utf-8"})
        response.close()
    finally:
        session.close()
    if response.status_code == 401:
        offered = response.headers.get("WWW-Authenticate", "").lower()
        methods = {part.strip().split(" ", 1)[0] for part in offered.split(",")}
        if "ntlm" in methods or ("negotiate" in methods and "ntlm" in offered):
            return NTLM
        if "basic" in methods:
            return BASIC
        raise SetupFailed("ews_error", "The Exchange server asks for a sign-in method this service does not "
                                       "support (NTLM or Basic are). Ask your administrator.")
    if response.status_code >= 500:
        raise SetupFailed("ews_error", f"The Exchange server answered with an error (HTTP {response.status_code}). "
                                       "Try again later.")
    raise SetupFailed("not_ews", "This address answered, but not as Exchange Web Services. Check the EWS URL "
                                 "(it usually ends in /EWS/Exchange.asmx).")


class _NoAutodiscover(Exception):
    """This candidate URL did not give an answer (try the next one)."""


@dataclass(frozen=True)
class _AutodiscoverAnswer:
    ews_url: str = ""
    redirect_address: str = ""


def _autodiscover(transport: _Transport, settings: Settings, login: str, password: str, email_hint: str) -> str:
    """The EWS URL for the login's mailbox via POX Autodiscover (each candidate and hop guarded)."""
    email = login if "@" in login and "\\" not in login else email_hint
    if "@" not in (email or ""):
        raise SetupFailed("ews_unreachable", "We need your email address to find your Exchange server. Enter it "
                                             "as Login, or enter the EWS URL under More.")
    # The credentials stay within this domain (and allow-listed hosts) for the whole discovery.
    domain = email.rsplit("@", 1)[1].lower().rstrip(".")
    seen: set[str] = set()
    for _ in range(3):  # Autodiscover may redirect to another address (e.g. after a migration)
        seen.add(email.lower())
        answer = _autodiscover_email(transport, settings, login, password, email, domain)
        if answer.ews_url:
            if not answer.ews_url.lower().startswith("https://"):
                raise HostNotAllowed("Autodiscover named an EWS URL that is not https.")
            return normalise_ews_url(answer.ews_url)
        email = answer.redirect_address
        if email.lower() in seen or "@" not in email:
            break
        if email.rsplit("@", 1)[1].lower().rstrip(".") != domain:
            # Another organisation's address: discovering it would take our password to its hosts.
            log.info("exchange autodiscover: not following an address redirect to another domain")
            raise SetupFailed("ews_unreachable", "Your organisation's Autodiscover points to another domain, so "
                                                 "we did not send your password there. Enter your EWS URL under "
                                                 "More (it usually ends in /EWS/Exchange.asmx).")
    raise SetupFailed("ews_unreachable", "We could not find your Exchange server automatically. Enter its EWS "
                                         "URL under More (it usually ends in /EWS/Exchange.asmx).")


def _autodiscover_email(transport: _Transport, settings: Settings, login: str, password: str,
                        email: str, domain: str) -> _AutodiscoverAnswer:
    refused: HostNotAllowed | None = None
    for template in settings.EWS_AUTODISCOVER_URLS:
        url = template.replace("{domain}", domain)
        try:
            return _autodiscover_at(transport, url, login, password, email, domain)
        except HostNotAllowed as exc:
            refused = refused or exc
        except _NoAutodiscover:
            continue
        except (requests.RequestException, TimeoutError) as exc:
            if _network_kind(exc) == "tls":
                raise _setup_error(exc) from None
            if transport.timed_out():
                raise  # connect() says "timeout"
            continue
    if refused is not None:
        raise refused
    return _AutodiscoverAnswer()


def _read_limited(response: requests.Response) -> bytes:
    data = b""
    for chunk in response.iter_content(65536):
        data += chunk
        if len(data) > MAX_AUTODISCOVER_BYTES:
            raise _NoAutodiscover()
    return data


def _autodiscover_at(transport: _Transport, url: str, login: str, password: str, email: str,
                     domain: str) -> _AutodiscoverAnswer:
    """POST the POX request to ``url``, following redirects hop by hop (each one guarded, none out of ``domain``)."""
    body = _AUTODISCOVER_REQUEST.format(email=html.escape(email)).encode()
    session = transport.session()
    # NTLM first (on-premises Exchange's usual method; the handshake starts on the server's 401 and
    # never sends the password itself); Basic only when the server offers nothing else.
    auth: requests.auth.AuthBase | None = requests_ntlm.HttpNtlmAuth(login, password)
    tried_basic = False
    try:
        for _ in range(MAX_AUTODISCOVER_HOPS * 2):
            try:
                transport.guard.check(url, timeout=transport.left())
            except socket.gaierror:
                raise _NoAutodiscover() from None
            if not transport.may_send_credentials(url, domain):
                # Not the login's organisation: no request at all (the body names the person, and
                # every request carries or invites credentials). This also keeps Basic in the domain.
                log.info("exchange autodiscover: skipped a host outside the login's domain")
                raise _NoAutodiscover()
            response = session.post(url, data=body, auth=auth, allow_redirects=False, stream=True,
                                    headers={"Content-Type": "text/xml; charset=utf-8"})
            try:
                if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    transport.guard.check_url(url)  # https only, no credentials: before any further request
                    continue
                if response.status_code == 401:
                    offered = response.headers.get("WWW-Authenticate", "").lower()
                    if tried_basic or "ntlm" in offered or "negotiate" in offered:
                        # Our credentials were refused. Stop at the first refusal: more tries (other
                        # candidates, other methods) could lock the person's directory account.
                        raise SetupFailed("auth_failed", "Exchange did not accept this login and password. "
                                                         "Check them and try again.")
                    if "basic" not in offered:
                        raise _NoAutodiscover()
                    auth, tried_basic = requests.auth.HTTPBasicAuth(login, password), True
                    continue
                if response.status_code != 200:
                    raise _NoAutodiscover()
                answer = _parse_autodiscover(_read_limited(response))
            finally:
                response.close()
            if answer is None:
                raise _NoAutodiscover()
            if isinstance(answer, str):  # redirectUrl: POST the same request there (checked at the loop's top)
                url = answer
                transport.guard.check_url(url)
                continue
            return answer
    finally:
        session.close()
    raise _NoAutodiscover()


def _parse_autodiscover(data: bytes) -> _AutodiscoverAnswer | str | None:
    """An answer, a redirect URL, or None when this is not a usable Autodiscover response."""
    try:
        root = etree.fromstring(data, parser=_SAFE_XML)
    except (etree.XMLSyntaxError, ValueError):
        return None
    ns = f"{{{_NS_AD_OUT}}}"
    account = root.find(f"{ns}Response/{ns}Account")
    if account is None:
        return None
    action = (account.findtext(f"{ns}Action") or "").strip()
    if action == "redirectAddr":
        return _AutodiscoverAnswer(redirect_address=(account.findtext(f"{ns}RedirectAddr") or "").strip())
    if action == "redirectUrl":
        return (account.findtext(f"{ns}RedirectUrl") or "").strip() or None
    urls: dict[str, str] = {}
    for proto in account.findall(f"{ns}Protocol"):
        kind = (proto.findtext(f"{ns}Type") or "").strip().upper()
        ews = (proto.findtext(f"{ns}EwsUrl") or "").strip()
        if ews:
            urls.setdefault(kind, ews)
    # We connect from outside the organisation's network: the external URL first.
    chosen = urls.get("EXPR") or urls.get("EXCH") or next(iter(urls.values()), "")
    return _AutodiscoverAnswer(ews_url=chosen) if chosen else None


def resolve_identity(protocol: Protocol, login: str) -> MailboxIdentity:
    """The signed-in account's mailbox: primary SMTP address and aliases (ResolveNames, directory only).

    An email login names its mailbox exactly. Anything else (``DOMAIN\\user``) is confirmed against
    the account's own Inbox (see :func:`_own_mailbox`), because ResolveNames matches names loosely.
    """
    is_address = "@" in login and "\\" not in login
    entry = login.split("\\", 1)[1] if "\\" in login else login
    candidates = _directory_candidates(protocol, entry)
    if is_address:
        exact = [c for c in candidates if c.matches(entry)]
        if len(exact) == 1:
            return exact[0]
    if not candidates:
        raise SetupFailed("mailbox_not_found", "Exchange accepted the login but found no mailbox for it. Use your "
                                               "email address as Login.")
    own = _own_mailbox(protocol, candidates[:MAX_IDENTITY_CANDIDATES])
    if own is None:
        raise SetupFailed("mailbox_not_found", f"We could not tell for sure which mailbox belongs to {entry}. Use "
                                               "your email address as Login.")
    return own


def _directory_candidates(protocol: Protocol, entry: str) -> list[MailboxIdentity]:
    results = protocol.resolve_names([entry], return_full_contact_data=True, search_scope="ActiveDirectory")
    candidates: list[MailboxIdentity] = []
    for result in results:
        if isinstance(result, Exception) or not isinstance(result, tuple):
            continue
        mailbox, contact = result
        address = (getattr(mailbox, "email_address", None) or "").strip().lower()
        if "@" not in address or getattr(mailbox, "mailbox_type", None) not in (None, "Mailbox"):
            continue
        aliases: set[str] = set()
        for entry_address in getattr(contact, "email_addresses", None) or []:
            text = (entry_address.email or "").strip()
            prefix, _, rest = text.partition(":")
            if rest and prefix.lower() == "smtp":
                aliases.add(rest.lower())
            elif not rest and "@" in text:
                aliases.add(text.lower())
        aliases.discard(address)
        name = getattr(mailbox, "name", None) or getattr(contact, "display_name", None) or ""
        candidates.append(MailboxIdentity(primary=address, aliases=frozenset(aliases), display_name=name))
    return candidates


class _InboxIds(GetFolder):
    """GetFolder for the Inbox of each mailbox given (None: the signed-in account's own), ids only."""

    # Someone else's mailbox answers "access denied" or "no such mailbox": an answer, not a failure.
    ERRORS_TO_CATCH_IN_RESPONSE = (*GetFolder.ERRORS_TO_CATCH_IN_RESPONSE, ews_errors.ErrorNonExistentMailbox)

    def call(self, mailboxes: list[str | None]) -> Iterator[str | None]:
        """The Inbox folder id per mailbox, in order (None where the server refused)."""
        self.folders = list(mailboxes)
        return self._elems_to_objs(self._chunked_get_elements(self.get_payload, items=self.folders))

    def get_payload(self, mailboxes: list[str | None]) -> Any:
        """The GetFolder request: exchangelib insists on a mailbox in every distinguished id; we need none for ours."""
        payload = create_element(f"m:{self.SERVICE_NAME}")
        shape = create_element("m:FolderShape")
        add_xml_child(shape, "t:BaseShape", "IdOnly")
        payload.append(shape)
        ids = create_element("m:FolderIds")
        for address in mailboxes:
            folder = create_element("t:DistinguishedFolderId", attrs={"Id": "inbox"})
            if address:
                mailbox = create_element("t:Mailbox")
                add_xml_child(mailbox, "t:EmailAddress", address)
                folder.append(mailbox)
            ids.append(folder)
        payload.append(ids)
        return payload

    def _elems_to_objs(self, elems: Any) -> Iterator[str | None]:
        for elem in elems:
            folder_id = None if isinstance(elem, Exception) else elem.find(f"{{{TNS}}}FolderId")
            yield folder_id.get("Id") if folder_id is not None else None


def _own_mailbox(protocol: Protocol, candidates: list[MailboxIdentity]) -> MailboxIdentity | None:
    """The one candidate whose Inbox is the signed-in account's own Inbox, or None.

    Without a mailbox in the request, the server opens the caller's own mailbox: the same folder id
    there and under a candidate's address means the candidate *is* the caller (a mailbox the caller
    may only open as a delegate has other ids, and others' answer "access denied").
    """
    account = _account(protocol, candidates[0].primary)
    ids = list(_InboxIds(account=account).call([None, *(c.primary for c in candidates)]))
    own_id = ids[0] if ids else None
    if not own_id:
        return None
    mine = [c for c, folder_id in zip(candidates, ids[1:], strict=False) if folder_id == own_id]
    return mine[0] if len(mine) == 1 else None


# ---- reading changes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cursor:
    """A folder's position: the sync state, plus the window bounds that keep applying."""

    floor: datetime
    ceiling: datetime | None
    state: str

    def encode(self) -> str:
        ceiling = str(int(self.ceiling.timestamp())) if self.ceiling else ""
        return "|".join((CURSOR_PREFIX, str(int(self.floor.timestamp())), ceiling, self.state))

    @staticmethod
    def decode(raw: str) -> _Cursor | None:
        parts = raw.split("|", 3)
        if len(parts) != 4 or parts[0] != CURSOR_PREFIX or not parts[3]:
            return None
        try:
            floor = datetime.fromtimestamp(int(parts[1]), UTC)
            ceiling = datetime.fromtimestamp(int(parts[2]), UTC) if parts[2] else None
        except ValueError:
            return None
        return _Cursor(floor, ceiling, parts[3])

    @staticmethod
    def fresh(folder: Folder, window: SyncWindow) -> _Cursor:
        if folder is Folder.CALENDAR:
            return _Cursor(window.events_from.astimezone(UTC), window.events_to.astimezone(UTC), "")
        return _Cursor(window.mail_since.astimezone(UTC), None, "")


class _InvalidSyncState(Exception):
    """The server refused the sync state."""


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, tzinfo=UTC)
        return datetime.fromtimestamp(value.timestamp(), tz=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def _address(mailbox: Any) -> Address | None:
    if mailbox is None:
        return None
    inner = getattr(mailbox, "mailbox", None)  # Attendee -> Mailbox
    target = inner if inner is not None else mailbox
    return Address.of(getattr(target, "email_address", None), getattr(target, "name", None))


def _addresses(values: Sequence[Any] | None) -> tuple[tuple[Address, ...], bool]:
    found = [a for a in (_address(v) for v in values or []) if a is not None]
    return tuple(found[:MAX_RECIPIENTS]), len(found) > MAX_RECIPIENTS


def _text_body(item: Any) -> str:
    text = getattr(item, "text_body", None)
    if text:
        return str(text)
    body = getattr(item, "body", None)
    if not body:
        return ""
    if type(body).__name__ == "HTMLBody":
        return html.unescape(_TAGS.sub(" ", str(body)))
    return str(body)


def _sensitivity(value: Any) -> Sensitivity:
    return _SENSITIVITY.get(str(value or "normal").lower(), Sensitivity.NORMAL)


def _fields(model: Any, names: Sequence[str], version: Version, with_body: bool = False) -> set[FieldPath]:
    paths = {FieldPath(field=model.get_field_by_fieldname(n)) for n in names}
    if with_body:
        # TextBody (plain text, Exchange 2013+) spares us converting HTML; older servers send Body.
        body = "text_body" if version.build >= EXCHANGE_2013 else "body"
        paths.add(FieldPath(field=model.get_field_by_fieldname(body)))
    return paths


class ExchangeMailbox:
    """The Mailbox protocol for one on-premises Exchange mailbox, over EWS."""

    provider: ClassVar[str] = PROVIDER

    def __init__(self, settings: Settings, address: str, login: str, password: str, ews_url: str,
                 auth_type: str, version: str | None, clients: Mapping[str, Any] | None = None) -> None:
        self.settings = settings
        self.address = address.lower()
        self.login = login
        self._password = password
        self.ews_url = ews_url
        self.auth_type = auth_type or NTLM
        self.version = version
        self._transport = _Transport(settings, clients)
        self._protocol: Protocol | None = None
        self._account_obj: Account | None = None

    def __repr__(self) -> str:
        return f"ExchangeMailbox({self.address!r}, {self.ews_url!r})"

    @property
    def calls(self) -> int:
        """HTTP requests made to the Exchange server so far."""
        return self._transport.calls

    def close(self) -> None:
        """Close the connections."""
        if self._protocol is not None:
            self._protocol.close()

    def _account(self) -> Account:
        if self._account_obj is None:
            self._protocol = self._transport.protocol(self.ews_url, self.login, self._password, self.auth_type,
                                                      _version_of(self.version))
            self._account_obj = _account(self._protocol, self.address)
        return self._account_obj

    def identity(self) -> MailboxIdentity:
        """The mailbox's primary address and aliases (ResolveNames; proves the credentials)."""
        try:
            self._account()
            assert self._protocol is not None
            return resolve_identity(self._protocol, self.login)
        except SetupFailed as exc:
            if self._transport.timed_out():
                raise self._timeout_or(exc) from None
            raise Unavailable(exc.message) from None
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise self._timeout_or(exc) from None

    def _timeout_or(self, exc: BaseException) -> ConnectorError:
        """The domain error for ``exc``; a request cut at its deadline is "did not answer in time"."""
        if self._transport.timed_out():
            return Unavailable("The Exchange server did not answer in time.")
        return _translate(exc)

    def read_changes(
        self, cursors: Mapping[str, str], window: SyncWindow, folders: tuple[Folder, ...] = tuple(Folder)
    ) -> Iterator[ChangePage]:
        """Pages of changes per folder since ``cursors`` (a missing or expired cursor reads ``window``)."""
        for name in folders or FOLDERS:
            folder = Folder(name)
            yield from self._read_folder(folder, cursors.get(folder.value, ""), window)

    def _read_folder(self, folder: Folder, raw_cursor: str, window: SyncWindow) -> Iterator[ChangePage]:
        cursor = _Cursor.decode(raw_cursor) if raw_cursor else None
        resynced = bool(raw_cursor) and cursor is None  # an unreadable cursor counts as expired
        if cursor is None:
            cursor = _Cursor.fresh(folder, window)
        while True:
            try:
                page, cursor = self._call(self._page, folder, cursor, resynced)
            except CursorExpired:
                if resynced or not cursor.state:
                    raise Unavailable("Exchange refused a fresh sync state.") from None
                log.info("exchange sync state expired folder=%s: resync from the window", folder.value)
                resynced = True
                cursor = _Cursor.fresh(folder, window)
                continue
            yield page
            if page.last:
                return

    def _call(self, fn: Any, *args: Any) -> Any:
        """Run one network step, translating vendor errors (yields stay outside, so the consumer's
        own exceptions are never mistaken for ours)."""
        try:
            return fn(*args)
        except _InvalidSyncState:
            raise CursorExpired() from None
        except ConnectorError as exc:
            if isinstance(exc, SetupFailed):
                raise self._timeout_or(exc) from None
            raise
        except Exception as exc:  # noqa: BLE001 - translated at the boundary
            raise self._timeout_or(exc) from None

    def _folder(self, folder: Folder) -> Any:
        cls = {Folder.INBOX: Inbox, Folder.SENT: SentItems, Folder.CALENDAR: Calendar}[folder]
        # A distinguished folder id needs no GetFolder round trip.
        return cls(_distinguished_id=DistinguishedFolderId(id=cls.DISTINGUISHED_FOLDER_ID,
                                                           mailbox=EwsMailbox(email_address=self.address)))

    def _page(self, folder: Folder, cursor: _Cursor, resynced: bool) -> tuple[ChangePage, _Cursor]:
        account = self._account()
        version = account.version
        calendar = folder is Folder.CALENDAR
        model = CalendarItem if calendar else Message
        svc = SyncFolderItems(account=account)
        try:
            changes = list(svc.call(
                folder=self._folder(folder), shape=ID_ONLY,
                additional_fields=_fields(model, _EVENT_SYNC_FIELDS if calendar else _MAIL_SYNC_FIELDS, version),
                sync_state=cursor.state or None, ignore=None, max_changes_returned=MAX_CHANGES, sync_scope=None,
            ))
        except ews_errors.ErrorInvalidSyncStateData:
            raise _InvalidSyncState() from None
        new_state = svc.sync_state or cursor.state
        # exchangelib's own loop stops when the state does not move; so do we (no endless loop).
        last = bool(svc.includes_last_item_in_range) or new_state == cursor.state
        page = ChangePage(folder=folder, last=last, resynced=resynced)
        wanted: list[Any] = []
        for change, item in changes:
            if isinstance(item, Exception):
                continue
            if change == SyncFolderItems.DELETE:
                page.deletions.append(Deletion(remote_id=item.id, folder=folder))
            elif change in (SyncFolderItems.CREATE, SyncFolderItems.UPDATE) and self._in_bounds(item, cursor, calendar):
                wanted.append(item)
        if wanted:
            fields = _fields(model, _EVENT_FIELDS if calendar else _MAIL_FIELDS, version, with_body=True)
            for full in GetItem(account=account, chunk_size=GET_ITEM_CHUNK).call(
                    items=wanted, additional_fields=fields, shape=ID_ONLY):
                if isinstance(full, Exception):
                    continue  # gone between the sync and the fetch: its Delete comes next time
                if calendar and isinstance(full, CalendarItem):
                    event = self._event(full, cursor)
                    if event is not None:
                        page.events.append(event)
                elif not calendar and isinstance(full, Message):
                    page.emails.append(self._email(full, folder))
        caught_up = cursor.ceiling if not last else None
        next_cursor = _Cursor(cursor.floor, caught_up, new_state)
        page.cursor = next_cursor.encode()
        return page, next_cursor

    @staticmethod
    def _in_bounds(item: Any, cursor: _Cursor, calendar: bool) -> bool:
        if not calendar:
            when = _utc(getattr(item, "datetime_received", None) or getattr(item, "datetime_sent", None))
            return when is None or when >= cursor.floor
        start = _utc(getattr(item, "start", None))
        end = _utc(getattr(item, "end", None)) or start
        if cursor.ceiling is not None and start is not None and start > cursor.ceiling:
            return False
        if getattr(item, "type", None) == "RecurringMaster":
            return True  # the series may reach into the window; its recurrence is checked after GetItem
        return end is None or end >= cursor.floor

    def _email(self, item: Any, folder: Folder) -> EmailItem:
        to, to_cut = _addresses(item.to_recipients)
        cc, cc_cut = _addresses(item.cc_recipients)
        body, body_cut = bound_text(_text_body(item))
        return EmailItem(
            remote_id=item.id,
            folder=folder,
            message_id=normalise_message_id(item.message_id),
            sender=_address(item.author) or _address(item.sender),
            to=to,
            cc=cc,
            subject=item.subject or "",
            body_text=body,
            sent_at=_utc(item.datetime_sent),
            received_at=_utc(item.datetime_received),
            sensitivity=_sensitivity(item.sensitivity),
            is_draft=bool(item.is_draft),
            truncated=to_cut or cc_cut or body_cut,
        )

    def _event(self, item: Any, cursor: _Cursor) -> EventItem | None:
        recurring = item.type == "RecurringMaster" or bool(item.is_recurring)
        if item.type == "RecurringMaster":
            boundary = getattr(getattr(item, "recurrence", None), "boundary", None)
            until = getattr(boundary, "end", None)
            if until is not None and _utc(until) is not None and _utc(until) < cursor.floor:  # type: ignore[operator]
                return None  # a series that ended before the window
        attendees, cut = _addresses([*(item.required_attendees or []), *(item.optional_attendees or [])])
        body, body_cut = bound_text(_text_body(item))
        occurrence = _utc(getattr(item, "original_start", None)) if item.type in ("Occurrence", "Exception") else None
        return EventItem(
            remote_id=item.id,
            uid=item.uid or item.id,
            subject=item.subject or "",
            body_text=body,
            location=str(item.location or ""),
            start=_utc(item.start),
            end=_utc(item.end),
            is_all_day=bool(item.is_all_day),
            organizer=_address(item.organizer),
            attendees=attendees,
            sensitivity=_sensitivity(item.sensitivity),
            is_cancelled=bool(item.is_cancelled),
            is_recurring=recurring,
            occurrence_start=occurrence,
            truncated=cut or body_cut,
        )


def open_mailbox(ctx: MailboxContext) -> ExchangeMailbox:
    """The Exchange connector for a stored connection (see ``ExchangeConnection.connection``)."""
    password = ctx.secrets.get(SECRET_PASSWORD)
    if not password:
        raise AuthRevoked("No Exchange password is saved for this mailbox. Connect to Exchange again.")
    conn = ctx.connection
    return ExchangeMailbox(
        ctx.settings,
        address=ctx.address,
        login=str(conn.get("login") or ctx.address),
        password=password,
        ews_url=str(conn.get("ews_url") or ""),
        auth_type=str(conn.get("auth_type") or NTLM),
        version=conn.get("version"),
        clients=ctx.clients,
    )
