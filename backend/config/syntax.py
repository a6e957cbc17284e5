"""Syntax checks of settings that stop a start: pure functions, used by config, security and net.

Fernet keys, host patterns (``EWS_ALLOWED_HOSTS``, ``EXCHANGE_IDENTITY_HOSTS``) and identity-host
entries. Like the rest of ``backend.config``, nothing here imports from ``backend``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Sequence
from typing import NamedTuple

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$")


def parse_identity_host(entry: str) -> tuple[str, tuple[str, ...]]:
    """One ``EXCHANGE_IDENTITY_HOSTS`` entry, ``host-pattern=domain|domain``: the pattern and the
    mail domains that issuer may vouch for (each with its subdomains); ValueError when malformed."""
    pattern, sep, raw = entry.partition("=")
    parse_host_pattern(pattern.strip())
    domains = tuple(d.strip().lower().rstrip(".") for d in raw.split("|") if d.strip())
    if not sep or not domains:
        raise ValueError(f"{entry!r} must name the mail domains it vouches for: host=domain|domain")
    for domain in domains:
        if not _DOMAIN.match(domain):
            raise ValueError(f"{domain!r} in {entry!r} is not a domain name")
    return pattern.strip(), domains


def fernet_key_problem(keys: Sequence[str]) -> str | None:
    """Why ``keys`` are not all Fernet keys (url-safe base64 of 32 bytes), or None when they are."""
    if not keys:
        return "at least one key is required"
    for index, key in enumerate(keys, start=1):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return f"key {index} is not url-safe base64"
        if len(raw) != 32:
            return f"key {index} must decode to 32 bytes (Fernet.generate_key())"
    return None


class HostPattern(NamedTuple):
    """The parts of one host pattern (``EWS_ALLOWED_HOSTS``, ``EXCHANGE_IDENTITY_HOSTS``)."""

    name: str
    wildcard: bool
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: int | None


def parse_host_pattern(pattern: str) -> HostPattern:
    """Parse ``host``, ``*.domain``, ``1.2.3.4``, ``[::1]``, ``10.0.0.0/8`` with an optional ``:port``.

    Raises ValueError naming the problem. Matching hosts against the parts is backend.net.hosts' job.
    """
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
        return HostPattern("", False, ipaddress.ip_network(host, strict=False), port)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return HostPattern("", False, ipaddress.ip_network(ip), port)
    if host.startswith("*."):
        return HostPattern(host[2:].rstrip("."), True, None, port)
    if "*" in host or not host:
        raise ValueError(f"only a leading '*.' wildcard is supported in {pattern!r}")
    return HostPattern(host.rstrip("."), False, None, port)
