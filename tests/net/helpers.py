"""Shared pieces of the backend.net tests: fake resolvers and a guarded session for the test CA."""

from __future__ import annotations

import socket
import threading
from typing import Any

import requests

from backend.net.adapter import guarded_session
from backend.net.guard import HostGuard
from backend.net.outbound import trust_bundle
from sandbox.tls import TestCA

PUBLIC = "93.184.216.34"


def table_resolver(table: dict[str, list[str]]) -> Any:
    """A resolver answering from ``table`` (name -> addresses); unknown names do not resolve."""
    def resolve(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [((socket.AF_INET6 if ":" in a else socket.AF_INET), (a, port)) for a in table[host]]

    return resolve


def slow_resolver(release: threading.Event, calls: list[str]) -> Any:
    """A resolver that records each name and answers 127.0.0.1 only once ``release`` is set (or after 20 s)."""
    def resolve(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        calls.append(host)
        release.wait(20)
        return [(socket.AF_INET, ("127.0.0.1", port))]

    return resolve


def session_for(ca: TestCA, guard: HostGuard, **kw: Any) -> requests.Session:
    """A guarded session trusting the test CA, with a 5 s timeout."""
    return guarded_session(guard, verify=trust_bundle(ca.ca_path), timeout=5, **kw)
