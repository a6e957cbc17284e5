"""The Graph HTTP client: authenticated GETs, writes and ``$batch`` within Graph's limits, errors mapped.

Plain ``requests``, no SDK. Every request for a mailbox passes its :class:`MailboxGate`; a 429/503
whose ``Retry-After`` is at most ``GRAPH_MAX_WAIT_SECONDS`` holds back every request for that
mailbox until it has passed, a longer one ends the read with :class:`Throttled` (the job is retried
after it). Vendor answers become our domain errors in :func:`check`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import requests

from backend.config import Settings
from backend.connectors.common import HttpAnswer, TokenSource, json_body
from backend.connectors.graph.gate import gate_for
from backend.errors import AuthRevoked, CursorExpired, Throttled, Unavailable
from backend.net.outbound import make_session
from backend.net.retry_after import retry_after_seconds

log = logging.getLogger(__name__)

API_VERSION = "v1.0"
MAX_BATCH = 20
MAX_ATTEMPTS = 5
# Backoff for a 503 without Retry-After (seconds, per attempt).
UNAVAILABLE_BACKOFF = (1.0, 2.0, 4.0, 8.0)
# OData's own punctuation stays readable in a query ($filter=..., calendarView's dates).
_QUERY_SAFE = "$,()'=:"
# Why a request is sent again: a short Retry-After was waited out, or a first 401 wants a new token.
Again = Literal["", "wait", "refresh"]


def graph_time(moment: datetime) -> str:
    """A moment in the UTC form Graph's query parameters take."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_query(query: Mapping[str, str]) -> str:
    """A query string for Graph (spaces as %20, OData punctuation kept)."""
    return urlencode(query, safe=_QUERY_SAFE, quote_via=quote)


@dataclass
class GraphRequest:
    """One GET against Graph, by a path relative to the version root (``/me/...``)."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)


class GraphResponse(HttpAnswer):
    """A Graph answer (a whole HTTP response or one ``$batch`` sub-response)."""


def check(resp: GraphResponse) -> GraphResponse:
    """Map an error answer to a domain error; return successful ones."""
    if 200 <= resp.status < 300:
        return resp
    code = ""
    if isinstance(resp.body, dict) and isinstance(resp.body.get("error"), dict):
        code = str(resp.body["error"].get("code", ""))[:80]
    detail = f" ({resp.status}{', ' + code if code else ''})"
    if resp.status == 410:
        raise CursorExpired(f"Microsoft Graph's sync state expired{detail}.")
    if resp.status in (401, 403):
        raise AuthRevoked(f"Microsoft 365 refused access to the mailbox{detail}. Connect Microsoft 365 again.")
    if resp.status in (429, 503):
        raise Throttled(f"Microsoft Graph is busy{detail}.",
                        retry_after=retry_after_seconds(resp.header("Retry-After"), 60.0))
    raise Unavailable(f"Microsoft Graph answered an error{detail}.")


class GraphClient:
    """Authenticated GETs and ``$batch`` against Graph for one mailbox, within Graph's limits."""

    def __init__(self, settings: Settings, tokens: TokenSource, gate_key: str,
                 session: requests.Session | None = None) -> None:
        self.settings = settings
        self.tokens = tokens
        self.base = f"{settings.GRAPH_URL}/{API_VERSION}"
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)
        self.gate = gate_for(gate_key)
        self.max_wait = float(settings.GRAPH_MAX_WAIT_SECONDS)
        self._calls = 0
        self._lock = threading.Lock()
        self._token: str | None = None

    @property
    def calls(self) -> int:
        """Graph requests made (each ``$batch`` sub-request counts, as Graph counts it)."""
        return self._calls

    def _count(self, n: int) -> None:
        with self._lock:
            self._calls += n

    def _bearer(self, refresh: bool) -> str:
        if refresh or self._token is None:
            self._token = self.tokens.access_token(force_refresh=refresh)
        return self._token

    def relative(self, link: str) -> str:
        """A link Graph handed out, as a path under our version root; refuses any other host."""
        if link.startswith("/"):
            return link
        if link.startswith(self.base + "/"):
            return link[len(self.base):]
        # A cursor or nextLink for another host must never receive our bearer token.
        raise CursorExpired("A saved Graph link points elsewhere; starting over.")

    def _throttle(self, resp: GraphResponse, attempt: int) -> None:
        """Wait out a short Retry-After (by holding the gate) or raise Throttled / Unavailable."""
        default = UNAVAILABLE_BACKOFF[min(attempt, len(UNAVAILABLE_BACKOFF) - 1)]
        hinted = resp.header("Retry-After")
        wait = retry_after_seconds(hinted, default)
        if wait > self.max_wait or attempt + 1 >= MAX_ATTEMPTS:
            # The run gives up and the job is retried after ``retry_after`` (the engine honours it);
            # holding a worker for minutes would only delay every other mailbox.
            if resp.status == 503 and not hinted:
                raise Unavailable("Microsoft Graph is unavailable (503).")
            raise Throttled(f"Microsoft Graph asked us to wait {wait:.0f} s.", retry_after=wait)
        # Every request for this mailbox in this process waits, not only the one that was refused.
        self.gate.hold_off(wait)
        log.info("graph %s: waiting %.1f s (attempt %d)", resp.status, wait, attempt + 1)

    def _again(self, resp: GraphResponse, attempt: int, refresh: bool) -> Again:
        """Whether (and why) to send a request again; a too-long wait raises instead."""
        if resp.status in (429, 503):
            self._throttle(resp, attempt)
            return "wait"
        if resp.status == 401 and not refresh:
            return "refresh"
        return ""

    def _send(self, method: str, path: str, headers: Mapping[str, str], body: Any, slots: int,
              refresh: bool) -> GraphResponse:
        token = self._bearer(refresh)
        all_headers = {"Accept": "application/json", **headers, "Authorization": f"Bearer {token}"}
        with self.gate.slot(slots, self.max_wait):
            try:
                raw = self.session.request(method, self.base + path, headers=all_headers,
                                           data=json.dumps(body) if body is not None else None)
            except requests.RequestException as exc:
                raise Unavailable(f"Microsoft Graph could not be reached ({type(exc).__name__}).") from None
        self._count(slots if path == "/$batch" else 1)
        return GraphResponse(raw.status_code, dict(raw.headers), json_body(raw))

    def get(self, path: str, headers: Mapping[str, str] | None = None, allow: tuple[int, ...] = ()) -> GraphResponse:
        """GET ``path`` with retries: Retry-After honoured, one token refresh on 401; errors mapped
        (statuses in ``allow``, a 404 for an item asked for by id, come back as they are)."""
        refresh = False
        for attempt in range(MAX_ATTEMPTS):
            resp = self._send("GET", path, headers or {}, None, 1, refresh)
            again = self._again(resp, attempt, refresh)
            if not again:
                return resp if resp.status in allow else check(resp)
            refresh = refresh or again == "refresh"
        raise Unavailable("Microsoft Graph kept failing.")

    def send(self, method: str, path: str, body: Any = None, allow: tuple[int, ...] = ()) -> GraphResponse:
        """POST/PATCH/DELETE ``path`` (a JSON body) with the same retries and error mapping as :meth:`get`."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        refresh = False
        for attempt in range(MAX_ATTEMPTS):
            resp = self._send(method, path, headers, body, 1, refresh)
            again = self._again(resp, attempt, refresh)
            if not again:
                return resp if resp.status in allow else check(resp)
            refresh = refresh or again == "refresh"
        raise Unavailable("Microsoft Graph kept failing.")

    def batch(self, requests_: list[GraphRequest]) -> list[GraphResponse]:
        """Several GETs in ``$batch`` calls of at most 20; throttled sub-requests are retried.

        Sub-responses are returned unchecked (in order) so each caller maps its own (410 -> resync).
        """
        results: dict[int, GraphResponse] = {}
        for start in range(0, len(requests_), MAX_BATCH):
            chunk = dict(enumerate(requests_[start:start + MAX_BATCH], start=start))
            refresh = False
            for attempt in range(MAX_ATTEMPTS):
                payload = {"requests": [
                    {"id": str(i), "method": "GET", "url": r.path, "headers": r.headers} for i, r in chunk.items()
                ]}
                outer = self._send("POST", "/$batch", {"Content-Type": "application/json"}, payload,
                                   len(chunk), refresh)
                again = self._again(outer, attempt, refresh)
                if again:
                    refresh = refresh or again == "refresh"
                    continue
                waits, retry_auth = self._settle(check(outer), chunk, refresh, results)
                if not chunk:
                    break
                if waits:
                    # The longest wait any sub-request was given holds for the whole mailbox.
                    longest = max(waits, key=lambda r: retry_after_seconds(r.header("Retry-After"), 0.0))
                    self._throttle(longest, attempt)
                if retry_auth:
                    refresh = True
            if chunk:
                raise Unavailable("Microsoft Graph kept failing part of a batch.")
        return [results[i] for i in range(len(requests_))]

    @staticmethod
    def _settle(outer: GraphResponse, chunk: dict[int, GraphRequest], refresh: bool,
                results: dict[int, GraphResponse]) -> tuple[list[GraphResponse], bool]:
        """Move the final sub-responses from ``chunk`` to ``results``; (throttled ones, a 401 to refresh)."""
        answers = outer.body.get("responses", []) if isinstance(outer.body, dict) else []
        waits: list[GraphResponse] = []
        retry_auth = False
        for answer in answers:
            try:
                index = int(answer.get("id"))
            except (TypeError, ValueError):
                continue
            if index not in chunk:
                continue
            sub = GraphResponse(int(answer.get("status", 500)), dict(answer.get("headers") or {}),
                                answer.get("body") or {})
            if sub.status in (429, 503):
                waits.append(sub)
            elif sub.status == 401 and not refresh:
                retry_auth = True
            else:
                results[index] = sub
                del chunk[index]
        return waits, retry_auth

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()
