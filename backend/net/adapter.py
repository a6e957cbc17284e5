"""Guarded requests sessions: the connection set-up that pins the checked address, and the adapter.

**Where the check happens.** A check made before connecting and a connection that resolves the
name again are two DNS lookups, and a hostile DNS server can answer the second one with
127.0.0.1 (DNS rebinding). So the guard is enforced *inside the connection*:
:class:`GuardedAdapter` mounts urllib3 connection classes that resolve the name, check every
address (:meth:`HostGuard.resolve`), and open the socket to one of exactly those checked
addresses. TLS is still verified against the host *name*, so certificates keep working. A
connection that is reused (keep-alive) was checked when it was opened. Redirects are never
followed blindly: exchangelib does not follow them, and our Autodiscover client follows each hop
itself; every hop is a new request through the same adapter, so it is checked again. Guarded
sessions ignore the environment (``trust_env = False``): no proxy from ``HTTPS_PROXY`` (a proxy
would resolve the name itself and defeat the check) and no credentials from ``.netrc``.

**Bounded in time.** Names resolve within the time left (:mod:`backend.net.resolve`), and every
request and its connections are cut at their :class:`~backend.net.deadline.Deadline`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import Timeout

from backend.net.deadline import Deadline, RequestBudget
from backend.net.guard import HostGuard, HostNotAllowed
from backend.net.outbound import SharedTlsMixin
from backend.net.resolve import ResolveTimeout
from backend.net.urllib3_internals import SocketHookHTTPSConnection


def _guarded_pool_class(guard: HostGuard, budget: RequestBudget) -> type[HTTPSConnectionPool]:
    """An HTTPS pool whose connections connect only to addresses ``guard`` checked, within ``budget``."""

    class GuardedHTTPSConnection(SocketHookHTTPSConnection):
        sidebar_deadline: Deadline | None = None
        # A duplicate descriptor of the socket: shutdown() through it cuts the connection in every
        # phase (TLS wrapping detaches the original socket object), and closing it closes nothing else.
        sidebar_watch: socket.socket | None = None

        def open_socket(self) -> socket.socket:
            """Resolve and check the host, then connect to one of the checked addresses."""
            # urllib3's ``host`` drops a trailing dot; guard.resolve drops it anyway.
            host = self.host.strip("[]")
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
                    # What urllib3's create_connection does, minus its own name lookup.
                    for option in self.socket_options or ():
                        sock.setsockopt(*option)
                    if self.timeout is not Timeout.DEFAULT_TIMEOUT:
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
                self.sidebar_drop_watch()
                self.sidebar_watch = sock.dup()
                if scope is not None:
                    scope.attach(self)  # covers the TLS handshake too
                return sock
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}")

        def request(self, *args: Any, **kwargs: Any) -> None:
            # A kept-alive connection serves this request now: it is bound by this request's deadline.
            scope = budget.current()
            if scope is not None and self.sidebar_watch is not None:
                scope.attach(self)
            super().request(*args, **kwargs)

        def abort(self) -> None:
            """Cut the connection (called by the watchdog): a blocked read returns at once."""
            watch = self.sidebar_watch
            if watch is not None:
                try:
                    watch.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed or never connected

        def sidebar_drop_watch(self) -> None:
            """Leave the deadline and close the watch descriptor."""
            if self.sidebar_deadline is not None:
                self.sidebar_deadline.detach(self)
                self.sidebar_deadline = None
            if self.sidebar_watch is not None:
                self.sidebar_watch.close()
                self.sidebar_watch = None

        def close(self) -> None:
            """Close the connection and its watch descriptor."""
            self.sidebar_drop_watch()
            super().close()

    class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return GuardedHTTPSConnectionPool


class GuardedAdapter(SharedTlsMixin):
    """A requests adapter for user-influenced hosts: https only, guarded connections, bounded time.

    ``verify`` is forced to our trust bundle (the environment's ``REQUESTS_CA_BUNDLE`` must not win),
    every request gets a (connect, read) timeout no longer than the time left before ``deadline``
    (``time.monotonic()`` based; None for no overall deadline) and is cut when its
    :class:`Deadline` passes (``budget``: per-request and overall limits, shared between adapters;
    by default just ``deadline``), and ``on_send`` counts requests.
    """

    # Guarded sessions reach user-influenced hosts: the Exchange servers (EWS, Autodiscover).
    service = "ews"

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
