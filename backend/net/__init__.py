"""Outbound https: sessions with our trust store and timeouts, the SSRF guard, host rules.

Modules: ``outbound`` (trust bundle, timeout sessions for fixed services), ``hosts`` (allow-list
rules, numeric spellings), ``resolve`` (time-limited lookups, the public-address check), ``guard``
(HostGuard, HostNotAllowed), ``deadline`` (Deadline, RequestBudget, the watchdog), ``adapter``
(GuardedAdapter, guarded sessions), ``urllib3_internals`` (the only use of urllib3 internals).
"""

from backend.net.adapter import GuardedAdapter, RefusingAdapter, guarded_session, mount_guarded
from backend.net.deadline import Deadline, RequestBudget
from backend.net.guard import HostGuard, HostNotAllowed
from backend.net.hosts import HostRule
from backend.net.outbound import OutboundSession, TimeoutAdapter, make_session, trust_bundle
from backend.net.resolve import AddrInfo, Resolver, ResolveTimeout, is_public_address

__all__ = [
    "AddrInfo",
    "Deadline",
    "GuardedAdapter",
    "HostGuard",
    "HostNotAllowed",
    "HostRule",
    "OutboundSession",
    "RefusingAdapter",
    "RequestBudget",
    "ResolveTimeout",
    "Resolver",
    "TimeoutAdapter",
    "guarded_session",
    "is_public_address",
    "make_session",
    "mount_guarded",
    "trust_bundle",
]
