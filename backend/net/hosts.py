"""Host names and host rules: the ``EWS_ALLOWED_HOSTS`` allow list, and host spellings we refuse.

A rule is a name (``mail.corp.example``), ``*.`` a domain's subdomains (``*.corp.example``), an
address (``127.0.0.1``, ``[::1]``) or a network (``10.20.0.0/16``), each with an optional
``:port``. The pattern syntax is checked at start by :func:`backend.config.parse_host_pattern`
(config imports nothing from the package); this module matches hosts against the parsed rules.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from backend.config.syntax import parse_host_pattern

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Decimal, octal, hex and short forms that inet_aton accepts as IPv4 addresses.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?$", re.IGNORECASE)


def is_numeric_spelling(host: str) -> bool:
    """True when ``host`` looks like a number (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``).

    Resolvers read such spellings as IPv4 addresses while people (and allow lists) do not, so the
    guard refuses every one that is not a canonical address.
    """
    if _NUMERIC_HOST.match(host) is not None:
        return True
    # Resolvers map a Unicode name through IDNA first (NFKC: 127.0.0.1 in fullwidth digits is 127.0.0.1):
    # a name that becomes a number there is a number spelled so an allow list would not see it.
    return not host.isascii() and _NUMERIC_HOST.match(idna_spelling(host)) is not None


def idna_spelling(host: str) -> str:
    """``host`` as a resolver looks it up (IDNA-mapped); unchanged when it has no such form."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


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
        parts = parse_host_pattern(pattern)
        return HostRule(name=parts.name, wildcard=parts.wildcard, network=parts.network, port=parts.port)

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
