"""Name resolution within a time limit, and the address check: only public unicast addresses pass.

Refused: loopback, private (RFC 1918, ULA), link-local (which holds the cloud metadata endpoint
169.254.169.254), CGNAT (100.64/10), unspecified, multicast, reserved and documentation ranges,
and any IPv6 form embedding such an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64).

``getaddrinfo`` has no timeout of its own, so names are resolved in a worker thread that we stop
waiting for after the time allowed (:class:`ResolveTimeout`). The lookup itself cannot be
cancelled; a bounded number of such threads may be outstanding at once.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from typing import Any

from backend.net.hosts import IPAddress, IPNetwork

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


class ResolveTimeout(TimeoutError):
    """A host name did not resolve within the time allowed."""


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


def system_resolver(host: str, port: int) -> list[AddrInfo]:
    """The operating system's resolver (``getaddrinfo`` for TCP), as a :data:`Resolver`."""
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
