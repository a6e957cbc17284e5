"""The outbound host guard for user-influenced URLs (EWS endpoints, Autodiscover, identity metadata).

A person types an EWS URL, Autodiscover follows redirects a server chose, and an Exchange identity
token names its own metadata URL (``amurl``). Each is a request from *our* network to a host someone
else picked, so before any byte leaves:

* only ``https`` is allowed, and a URL must not carry credentials (``user:pw@host``);
* the host's addresses must be public (:func:`backend.net.resolve.is_public_address`). Exceptions
  are only what ``EWS_ALLOWED_HOSTS`` admits (:class:`backend.net.hosts.HostRule`);
* ambiguous numeric host spellings (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``, and Unicode
  digits that IDNA maps to such a number) are refused outright: resolvers read them as IP addresses
  while people (and allow lists) do not.

The guard decides; :mod:`backend.net.adapter` enforces it inside each connection.

Residual risk, documented: a name is checked when a *connection* is opened, not per request (a
reused connection keeps the address it was opened to, which was checked); an allowed name or
network admits whatever it resolves to, so the administrator who lists a name also trusts its DNS;
and public hosts are reachable on any port (EWS is sometimes served on unusual ports). Name rules
are matched before address rules, and a name admitted only by an address or network rule is logged
as such (``rebind.example`` resolving to a listed ``127.0.0.1`` passes that rule).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

# HostNotAllowed is a SetupFailed (a domain error, below every layer) so the connect flow shows its message.
from backend.errors import SetupFailed
from backend.net.hosts import HostRule, IPAddress, is_numeric_spelling
from backend.net.resolve import (
    DNS_TIMEOUT_SECONDS,
    AddrInfo,
    Resolver,
    is_public_address,
    resolve_within,
    system_resolver,
)

log = logging.getLogger(__name__)


class HostNotAllowed(SetupFailed):
    """The URL's host is refused by the outbound guard (private, loopback, metadata, not https...)."""

    def __init__(self, message: str) -> None:
        super().__init__("host_not_allowed", message)


def _ambiguous_message(host: str) -> str:
    return f"The server address {host} is not allowed: write it as a host name or a standard IP address."


def _refused_message(host: str) -> str:
    return (f"The server address {host} is not allowed: it points to a private or internal network. "
            "If this is your Exchange server, ask your administrator to allow it.")


class HostGuard:
    """Decides whether a URL, host or resolved address may be contacted."""

    def __init__(self, allowed: Iterable[str] = (), resolver: Resolver | None = None,
                 dns_timeout: float = DNS_TIMEOUT_SECONDS) -> None:
        self.rules = tuple(HostRule.parse(p) for p in allowed if p.strip())
        self.resolver = resolver or system_resolver
        self.dns_timeout = dns_timeout

    def admitted(self, host: str, port: int, ip: IPAddress | None = None) -> bool:
        """True when an allow-list rule admits this host (or address)."""
        return any(rule.admits(host, port, ip) for rule in self.rules)

    def admitted_by_name(self, host: str, port: int) -> bool:
        """True when a *name* rule admits ``host`` (address and network rules are not consulted)."""
        return any(rule.network is None and rule.admits(host, port) for rule in self.rules)

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
            if is_numeric_spelling(host):
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
            if is_numeric_spelling(bare):
                raise HostNotAllowed(_ambiguous_message(bare))
            limit = self.dns_timeout if timeout is None else min(timeout, self.dns_timeout)
            infos = resolve_within(self.resolver, bare, port, limit)
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, f"{bare} has no addresses")
        # Names first: a name rule vouches for every address its name has.
        by_name = literal is None and self.admitted_by_name(bare, port)
        for _, addr in infos:
            ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
            if is_public_address(ip) or by_name:
                continue
            if not self.admitted(bare, port, ip):
                raise HostNotAllowed(_refused_message(bare))
            # Documented (README, Security): an address rule admits any name resolving into it,
            # whoever runs that name's DNS. Say so each time it is the only reason.
            if literal is None:
                log.warning("%s admitted only because it resolves into an EWS_ALLOWED_HOSTS address rule (%s)",
                            bare, ip)
        return infos

    def check(self, url: str, timeout: float | None = None) -> list[AddrInfo]:
        """Syntax checks, then resolution (within ``timeout``) and address checks for ``url``."""
        host, port = self.check_url(url)
        return self.resolve(host, port, timeout)
