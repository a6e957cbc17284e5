"""Fault injection and quota accounting shared by the fake Gmail and the fake Calendar.

A :class:`Faults` holds rules ("the next N matching requests answer 429 / 403 rateLimitExceeded /
500 / 503 backendError, with or without Retry-After, or are slow") and counts quota units per user
per minute as Google does. Errors use Google's JSON error shape
(``{"error": {"code", "message", "errors": [{"reason"}], "status"}}``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

# What each kind of injected failure answers: status, reason, canonical status.
KINDS: dict[str, tuple[int, str, str]] = {
    "429": (429, "rateLimitExceeded", "RESOURCE_EXHAUSTED"),
    "403rate": (403, "rateLimitExceeded", "PERMISSION_DENIED"),
    "403user": (403, "userRateLimitExceeded", "PERMISSION_DENIED"),
    "403daily": (403, "dailyLimitExceeded", "PERMISSION_DENIED"),
    "500": (500, "backendError", "INTERNAL"),
    "503": (503, "backendError", "UNAVAILABLE"),
    # A 200 whose body is not JSON (a proxy's or a front end's page in place of the answer).
    "garbled200": (200, "", ""),
}


class Garbled(str):
    """A body sent as it is, not as JSON: what a ``garbled200`` fault answers."""


def google_error(status: int, reason: str, message: str, canonical: str = "") -> dict[str, Any]:
    """Google's JSON error body."""
    return {"error": {"code": status, "message": message,
                      "errors": [{"message": message, "domain": "global" if status != 403 else "usageLimits",
                                  "reason": reason}],
                      "status": canonical or {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                                              404: "NOT_FOUND", 410: "GONE"}.get(status, "UNKNOWN")}}


@dataclass
class Rule:
    """An injected failure or delay for the next ``times`` matching requests (None: all)."""

    kind: str  # a key of KINDS, or "slow"
    times: int | None = 1
    retry_after: float | None = None
    delay: float = 0.0
    path_contains: str = ""
    in_batch: bool = False  # True: batch parts, not whole HTTP requests
    hits: int = 0


@dataclass
class Faults:
    """Rules, latency and quota units of one fake API."""

    rules: list[Rule] = field(default_factory=list)
    latency: float = 0.0
    # (user, monotonic time, units) of every counted request.
    units: list[tuple[str, float, int]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def inject(self, kind: str, times: int | None = 1, *, retry_after: float | None = None, delay: float = 0.0,
               path_contains: str = "", in_batch: bool = False) -> Rule:
        """Fail (or slow down) the next matching requests."""
        assert kind in KINDS or kind == "slow", kind
        rule = Rule(kind, times, retry_after, delay, path_contains, in_batch)
        with self.lock:
            self.rules.append(rule)
        return rule

    def spend(self, user: str, units: int) -> None:
        """Count ``units`` of quota for ``user``."""
        with self.lock:
            self.units.append((user, time.monotonic(), units))

    def total_units(self, user: str | None = None) -> int:
        """Quota units spent so far (by one user, or by all)."""
        with self.lock:
            return sum(u for who, _, u in self.units if user is None or who == user)

    def check(self, path: str, in_batch: bool = False) -> tuple[int, dict[str, str], Any] | None:
        """An injected answer for this request, or None (after any injected delay)."""
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            chosen: list[Rule] = []
            for rule in self.rules:
                if rule.in_batch != in_batch or rule.path_contains not in path:
                    continue
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                rule.hits += 1
                chosen.append(rule)
                if rule.kind != "slow":
                    break
        for rule in chosen:
            if rule.kind == "slow":
                time.sleep(rule.delay)
                continue
            status, reason, canonical = KINDS[rule.kind]
            if rule.kind == "garbled200":
                return status, {}, Garbled("<html><body>Temporary glitch</body></html>")
            headers = {"Retry-After": f"{rule.retry_after:g}"} if rule.retry_after is not None else {}
            return status, headers, google_error(status, reason, f"Injected {rule.kind}.", canonical)
        return None
