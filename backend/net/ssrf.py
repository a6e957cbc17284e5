"""The outbound host guard for user-influenced URLs (EWS endpoints, Autodiscover, identity metadata).

A person types an EWS URL, Autodiscover follows redirects a server chose, and an Exchange identity
token names its own metadata URL (``amurl``). Each is a request from *our* network to a host someone
else picked, so before any byte leaves:

* only ``https`` is allowed, and a URL must not carry credentials (``user:pw@host``);
* the host's addresses must be public. Loopback, private (RFC 1918, ULA), link-local (which holds
  the cloud metadata endpoint 169.254.169.254), CGNAT (100.64/10), unspecified, multicast,
  reserved and documentation ranges are refused, as is any IPv6 form embedding such an IPv4
  address (IPv4-mapped, 6to4, Teredo, NAT64). Exceptions are only what ``EWS_ALLOWED_HOSTS``
  admits: ``mail.corp.example``, ``*.corp.example``, ``127.0.0.1:8443``, ``[::1]:8443`` or a
  network such as ``10.20.0.0/16`` (optionally ``:port`` for names and addresses);
* ambiguous numeric host spellings (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) are refused
  outright: resolvers read them as IP addresses while people (and allow lists) do not.

**Where the check happens.** A check made before connecting and a connection that resolves the
name again are two DNS lookups, and a hostile DNS server can answer the second one with
127.0.0.1 (DNS rebinding). So the guard is enforced *inside the connection*:
:class:`GuardedAdapter` mounts urllib3 connection classes whose ``_new_conn`` resolves the name,
checks every address, and opens the socket to one of exactly those checked addresses. TLS is
still verified against the host *name*, so certificates keep working. A connection that is reused
(keep-alive) was checked when it was opened. Redirects are never followed blindly: exchangelib does
not follow them, and our Autodiscover client follows each hop itself; every hop is a new request
through the same adapter, so it is checked again. Guarded sessions ignore the environment
(``trust_env = False``): no proxy from ``HTTPS_PROXY`` (a proxy would resolve the name itself and
defeat the check) and no credentials from ``.netrc``.

**Bounded in time, whatever the server does.** A per-read timeout does not bound a server that
answers one byte just before each timeout, and ``getaddrinfo`` has no timeout of its own. So:

* names are resolved in a worker thread that we stop waiting for after ``dns_timeout`` (or the
  time left), as :class:`ResolveTimeout` (the lookup itself cannot be cancelled; a bounded number
  of such threads may be outstanding at once);
* every request sent through a :class:`GuardedAdapter` gets a :class:`Deadline`: the earliest of
  the adapter's overall deadline and ``request_seconds`` after the send. Each connection that
  request uses (opened, TLS handshake, sent, headers and body read) is attached to it, and a
  single watchdog thread shuts down (``SHUT_RDWR``) the attached sockets when it passes, so a
  blocked ``recv`` returns at once and the read fails. A kept-alive connection moves to the
  deadline of the next request that uses it. :meth:`RequestBudget.timed_out` tells a caller that
  its failure was this cut, so it can say "timeout" rather than "connection lost".

Residual risk, documented: a name is checked when a *connection* is opened, not per request (a
reused connection keeps the address it was opened to, which was checked); an allowed name or
network admits whatever it resolves to, so the administrator who lists a name also trusts its DNS;
and public hosts are reachable on any port (EWS is sometimes served on unusual ports).
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import _set_socket_options
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from backend.connectors.errors import SetupFailed

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# getaddrinfo-style answers: (family, sockaddr); sockaddr[0] is the address text.
AddrInfo = tuple[int, tuple[Any, ...]]
Resolver = Callable[[str, int], list[AddrInfo]]

# Ranges refused even where ``is_global`` would be true (or where Python versions disagree).
_ALWAYS_REFUSED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
        "::/128", "::1/128", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8", "2001:db8::/32",
        "100::/64", "2001::/23",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# A name that takes longer than this to resolve is treated as a timeout (callers may ask for less).
DNS_TIMEOUT_SECONDS = 10.0
# Lookups still running after their caller gave up hold a thread each; beyond this many, new
# lookups fail at once instead of piling up threads (a slow DNS server must not exhaust us).
MAX_PENDING_LOOKUPS = 32
# Decimal, octal, hex and short forms that inet_aton accepts as IPv4 addresses.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?$", re.IGNORECASE)


class ResolveTimeout(TimeoutError):
    """A host name did not resolve within the time allowed."""


class HostNotAllowed(SetupFailed):
    """The URL's host is refused by the outbound guard (private, loopback, metadata, not https...)."""

    def __init__(self, message: str) -> None:
        super().__init__("host_not_allowed", message)


def _ambiguous_message(host: str) -> str:
    return f"The server address {host} is not allowed: write it as a host name or a standard IP address."


def _refused_message(host: str) -> str:
    return (f"The server address {host} is not allowed: it points to a private or internal network. "
            "If this is your Exchange server, ask your administrator to allow it.")


def is_public_address(ip: IPAddress) -> bool:
    """True when ``ip`` (and any IPv4 address embedded in it) is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[IPAddress] = []
        if ip.ipv4_mapped is not None:
            embedded.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(not is_public_address(e) for e in embedded):
            return False
        if ip.ipv4_mapped is not None:
            return True  # judged by its IPv4 address above
    if any(ip in net for net in _ALWAYS_REFUSED if net.version == ip.version):
        return False
    return bool(ip.is_global) and not ip.is_multicast and not ip.is_reserved


@dataclass(frozen=True)
class HostRule:
    """One ``EWS_ALLOWED_HOSTS`` entry: a name, ``*.`` a domain's subdomains, an address or a network."""

    name: str = ""
    wildcard: bool = False
    network: IPNetwork | None = None
    port: int | None = None

    @staticmethod
    def parse(pattern: str) -> HostRule:
        """Parse ``host``, ``*.domain``, ``1.2.3.4``, ``[::1]``, ``10.0.0.0/8`` with an optional ``:port``."""
        text = pattern.strip().lower()
        if not text:
            raise ValueError("empty host pattern")
        port: int | None = None
        if text.startswith("["):
            end = text.find("]")
            if end < 0:
                raise ValueError(f"unbalanced brackets in {pattern!r}")
            host, rest = text[1:end], text[end + 1:]
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ValueError(f"bad port in {pattern!r}")
                port = int(rest[1:])
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            if not port_text.isdigit():
                raise ValueError(f"bad port in {pattern!r}")
            port = int(port_text)
        else:
            host = text
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"bad port in {pattern!r}")
        if "/" in host:
            return HostRule(network=ipaddress.ip_network(host, strict=False), port=port)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return HostRule(network=ipaddress.ip_network(ip), port=port)
        if host.startswith("*."):
            return HostRule(name=host[2:].rstrip("."), wildcard=True, port=port)
        if "*" in host or not host:
            raise ValueError(f"only a leading '*.' wildcard is supported in {pattern!r}")
        return HostRule(name=host.rstrip("."), port=port)

    def admits(self, host: str, port: int, ip: IPAddress | None = None) -> bool:
        """True when this rule admits ``host:port`` (or the address ``ip`` it resolved to)."""
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            candidates = [ip] if ip is not None else []
            try:
                candidates.append(ipaddress.ip_address(host))
            except ValueError:
                pass
            return any(c.version == self.network.version and c in self.network for c in candidates)
        name = host.lower().rstrip(".")
        if self.wildcard:
            return name.endswith("." + self.name)
        return name == self.name


def _system_resolver(host: str, port: int) -> list[AddrInfo]:
    return [(family, sockaddr) for family, _, _, _, sockaddr in
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


_LOOKUP_SLOTS = threading.BoundedSemaphore(MAX_PENDING_LOOKUPS)


def resolve_within(resolver: Resolver, host: str, port: int, timeout: float) -> list[AddrInfo]:
    """``resolver(host, port)`` in a worker thread, waiting at most ``timeout`` seconds (ResolveTimeout).

    getaddrinfo cannot be interrupted, so the worker may outlive the wait; it ends on its own when
    the system resolver gives up, and releases its slot then.
    """
    if timeout <= 0 or not _LOOKUP_SLOTS.acquire(timeout=min(timeout, 1.0)):
        raise ResolveTimeout(f"looking up {host} took too long")
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = resolver(host, port)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = exc
        finally:
            _LOOKUP_SLOTS.release()
            done.set()

    threading.Thread(target=lookup, name=f"dns:{host}"[:60], daemon=True).start()
    if not done.wait(timeout):
        raise ResolveTimeout(f"looking up {host} took too long")
    if "error" in outcome:
        raise outcome["error"]
    infos: list[AddrInfo] = outcome["infos"]
    return infos


class _Watchdog:
    """One daemon thread that runs callbacks at given ``time.monotonic()`` moments (deadlines)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` (quickly, without raising) in the watchdog thread at ``when``."""
        with self._cond:
            heapq.heappush(self._heap, (when, next(self._order), callback))
            # (Re)started lazily: a forked worker process has no copy of the parent's thread.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="outbound-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, callback = heapq.heappop(self._heap)
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
            try:
                callback()
            except Exception:  # the watchdog must survive any callback
                log.exception("outbound watchdog callback failed")


_WATCHDOG = _Watchdog()


class Deadline:
    """A moment after which every connection attached to it is cut, so a blocked read returns at once."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self.cut = False  # a connection was shut down because of this deadline
        self._lock = threading.Lock()
        self._conns: set[Any] = set()
        _WATCHDOG.call_at(at, self._expire)

    def left(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.at - time.monotonic()

    def attach(self, conn: Any) -> None:
        """Watch ``conn`` (it has ``abort()`` and a ``sidebar_deadline`` slot); it leaves its earlier deadline."""
        previous = getattr(conn, "sidebar_deadline", None)
        if previous is not None and previous is not self:
            previous.detach(conn)
        conn.sidebar_deadline = self
        with self._lock:
            if not self.expired:
                self._conns.add(conn)
                return
            self.cut = True
        conn.abort()

    def detach(self, conn: Any) -> None:
        """Stop watching ``conn`` (closed, or used by a later request)."""
        with self._lock:
            self._conns.discard(conn)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            conns, self._conns = list(self._conns), set()
            self.cut = self.cut or bool(conns)
        for conn in conns:
            conn.abort()


class RequestBudget:
    """The time limits of one caller's requests: ``request_seconds`` per request, ``deadline`` overall.

    Shared by every adapter of one connection policy (exchangelib makes several sessions), so a
    caller can ask :meth:`timed_out` after a failure. Both limits are optional; with neither, only
    per-read timeouts apply.
    """

    def __init__(self, request_seconds: float | None = None, deadline: float | None = None) -> None:
        self.request_seconds = request_seconds
        self.deadline = deadline
        self._local = threading.local()

    def begin(self) -> Deadline | None:
        """The deadline of a request about to be sent from this thread (it becomes :meth:`current`)."""
        limits = [t for t in (self.deadline,
                              time.monotonic() + self.request_seconds if self.request_seconds else None)
                  if t is not None]
        scope = Deadline(min(limits)) if limits else None
        self._local.current = scope
        return scope

    def current(self) -> Deadline | None:
        """The deadline of this thread's latest request."""
        scope: Deadline | None = getattr(self._local, "current", None)
        return scope

    def left(self) -> float | None:
        """Seconds left before the overall deadline (None without one)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def timed_out(self) -> bool:
        """True when this thread's latest request was cut by its deadline, or the overall deadline passed."""
        scope = self.current()
        if scope is not None and scope.expired and scope.cut:
            return True
        return self.deadline is not None and time.monotonic() >= self.deadline


class HostGuard:
    """Decides whether a URL, host or resolved address may be contacted."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver | None = None,
                 dns_timeout: float = DNS_TIMEOUT_SECONDS) -> None:
        self.rules = tuple(HostRule.parse(p) for p in allowed if p.strip())
        self.resolver = resolver or _system_resolver
        self.dns_timeout = dns_timeout

    def admitted(self, host: str, port: int, ip: IPAddress | None = None) -> bool:
        """True when an allow-list rule admits this host (or address)."""
        return any(rule.admits(host, port, ip) for rule in self.rules)

    def check_url(self, url: str) -> tuple[str, int]:
        """Syntax checks (https, no credentials, an unambiguous host); returns (host, port)."""
        try:
            parts = urlsplit(url)
            port = parts.port or 443
        except ValueError:
            raise HostNotAllowed("The server address is not a valid URL.") from None
        if parts.scheme.lower() != "https":
            raise HostNotAllowed("Only https server addresses are allowed.")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise HostNotAllowed("The server address must not contain a user name or password.")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise HostNotAllowed("The server address has no host name.")
        if "%" in host:
            raise HostNotAllowed("IPv6 zone identifiers are not allowed in server addresses.")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if _NUMERIC_HOST.match(host):
                # Only the canonical dotted quad is an address we recognise; "2130706433" is too.
                raise HostNotAllowed(_ambiguous_message(host)) from None
        return host, port

    def resolve(self, host: str, port: int, timeout: float | None = None) -> list[AddrInfo]:
        """Resolve ``host`` and check every address; HostNotAllowed if any is refused.

        ``socket.gaierror`` propagates when the name does not resolve, :class:`ResolveTimeout` when
        it takes longer than ``timeout`` (at most ``dns_timeout``). All addresses must pass, not
        just one, because the connection may use any of them.
        """
        bare = host.strip("[]").rstrip(".")
        try:
            literal: IPAddress | None = ipaddress.ip_address(bare)
        except ValueError:
            literal = None
        if literal is not None:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            sockaddr: tuple[Any, ...] = (str(literal), port, 0, 0) if literal.version == 6 else (str(literal), port)
            infos: list[AddrInfo] = [(family, sockaddr)]
        else:
            if _NUMERIC_HOST.match(bare):
                raise HostNotAllowed(_ambiguous_message(bare))
            limit = self.dns_timeout if timeout is None else min(timeout, self.dns_timeout)
            infos = resolve_within(self.resolver, bare, port, limit)
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, f"{bare} has no addresses")
        for _, addr in infos:
            ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
            if not is_public_address(ip) and not self.admitted(bare, port, ip):
                raise HostNotAllowed(_refused_message(bare))
        return infos

    def check(self, url: str, timeout: float | None = None) -> list[AddrInfo]:
        """Syntax checks, then resolution (within ``timeout``) and address checks for ``url``."""
        host, port = self.check_url(url)
        return self.resolve(host, port, timeout)


def _guarded_pool_class(guard: HostGuard, budget: RequestBudget) -> type[HTTPSConnectionPool]:
    """An HTTPS pool whose connections connect only to addresses ``guard`` checked, within ``budget``."""

    class GuardedHTTPSConnection(HTTPSConnection):
        sidebar_deadline: Deadline | None = None
        # A duplicate descriptor of the socket: shutdown() through it cuts the connection in every
        # phase (TLS wrapping detaches the original socket object), and closing it closes nothing else.
        _watch: socket.socket | None = None

        def _new_conn(self) -> socket.socket:
            host = self._dns_host.strip("[]")
            scope = budget.current()
            limit = float(self.timeout) if isinstance(self.timeout, int | float) else None
            if scope is not None:
                limit = scope.left() if limit is None else min(limit, scope.left())
            try:
                infos = guard.resolve(host, self.port, limit)
            except socket.gaierror as exc:
                raise NameResolutionError(self.host, self, exc) from exc
            except ResolveTimeout as exc:
                raise ConnectTimeoutError(self, f"Looking up {self.host} took too long.") from exc
            error: OSError | None = None
            for family, sockaddr in infos:
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    _set_socket_options(sock, self.socket_options)
                    if self.timeout is not _DEFAULT_TIMEOUT:
                        sock.settimeout(self.timeout)
                    sock.connect(sockaddr)
                except TimeoutError as exc:
                    sock.close()
                    raise ConnectTimeoutError(
                        self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                    ) from exc
                except OSError as exc:
                    sock.close()
                    error = exc
                    continue
                self._drop_watch()
                self._watch = sock.dup()
                if scope is not None:
                    scope.attach(self)  # covers the TLS handshake too
                return sock
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

        def request(self, *args: Any, **kwargs: Any) -> None:
            # A kept-alive connection serves this request now: it is bound by this request's deadline.
            scope = budget.current()
            if scope is not None and self._watch is not None:
                scope.attach(self)
            super().request(*args, **kwargs)

        def abort(self) -> None:
            """Cut the connection (called by the watchdog): a blocked read returns at once."""
            watch = self._watch
            if watch is not None:
                try:
                    watch.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed or never connected

        def _drop_watch(self) -> None:
            if self.sidebar_deadline is not None:
                self.sidebar_deadline.detach(self)
                self.sidebar_deadline = None
            if self._watch is not None:
                self._watch.close()
                self._watch = None

        def close(self) -> None:
            """Close the connection and its watch descriptor."""
            self._drop_watch()
            super().close()

    class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return GuardedHTTPSConnectionPool


class GuardedAdapter(HTTPAdapter):
    """A requests adapter for user-influenced hosts: https only, guarded connections, bounded time.

    ``verify`` is forced to our trust bundle (the environment's ``REQUESTS_CA_BUNDLE`` must not win),
    every request gets a (connect, read) timeout no longer than the time left before ``deadline``
    (``time.monotonic()`` based; None for no overall deadline) and is cut when its
    :class:`Deadline` passes (``budget``: per-request and overall limits, shared between adapters;
    by default just ``deadline``), and ``on_send`` counts requests.
    """

    def __init__(
        self,
        guard: HostGuard,
        *,
        verify: str | bool,
        timeout: float,
        deadline: float | None = None,
        on_send: Callable[[], None] | None = None,
        budget: RequestBudget | None = None,
        **kwargs: Any,
    ) -> None:
        self.guard = guard
        self.verify = verify
        self.timeout = timeout
        self.budget = budget or RequestBudget(deadline=deadline)
        self.deadline = self.budget.deadline
        self.on_send = on_send
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Create the pool manager with guarded HTTPS pools (and no plain-http pools)."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"https": _guarded_pool_class(self.guard, self.budget)}

    def _timeouts(self) -> tuple[float, float]:
        read = float(self.timeout)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise requests.exceptions.ConnectTimeout("The time allowed for this connection attempt ran out.")
            read = min(read, left)
        return min(10.0, read), read

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Check the URL, then send with our trust, our timeouts and no proxy."""
        self.guard.check_url(str(request.url))
        bounded = self._timeouts()
        if isinstance(timeout, int | float):
            bounded = (min(bounded[0], float(timeout)), min(bounded[1], float(timeout)))
        self.budget.begin()
        if self.on_send is not None:
            self.on_send()
        return super().send(request, stream=stream, timeout=bounded, verify=self.verify, cert=cert, proxies={})


class RefusingAdapter(HTTPAdapter):
    """Mounted for ``http://`` on guarded sessions: plain http is never sent."""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Refuse."""
        raise HostNotAllowed("Only https server addresses are allowed.")


def mount_guarded(session: requests.Session, adapter: GuardedAdapter) -> requests.Session:
    """Mount ``adapter`` for https (and a refusal for http) and ignore the environment."""
    session.trust_env = False  # no proxies or .netrc credentials from the environment
    session.verify = adapter.verify
    session.mount("https://", adapter)
    session.mount("http://", RefusingAdapter())
    return session


def guarded_session(
    guard: HostGuard,
    *,
    verify: str | bool,
    timeout: float,
    deadline: float | None = None,
    on_send: Callable[[], None] | None = None,
    user_agent: str = "SidebarSync/1",
    budget: RequestBudget | None = None,
) -> requests.Session:
    """A requests session for user-influenced hosts (see :class:`GuardedAdapter`)."""
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    adapter = GuardedAdapter(guard, verify=verify, timeout=timeout, deadline=deadline, on_send=on_send, budget=budget)
    return mount_guarded(session, adapter)
