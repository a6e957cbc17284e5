"""The Google HTTP client: authenticated GETs and Gmail batches within Google's limits, errors mapped.

Plain ``requests`` over the project's outbound session (CA bundle, timeouts), the bearer token
from a :class:`~backend.connectors.google.tokens.TokenSource`. Every request passes the account's
:class:`~backend.connectors.google.gate.UserGate` with its quota units. 429 and 403
``rateLimitExceeded`` / ``userRateLimitExceeded`` are waited out when ``Retry-After`` (or the
backoff) is at most ``GOOGLE_MAX_WAIT_SECONDS``, and otherwise end the read with ``Throttled``;
a 5xx (``backendError``, 503 "service unavailable") with ``Retry-After`` is treated the same way,
as Graph treats its 503; a 5xx without one is ``Unavailable`` at once (the job's retry backs off);
a 401 gets one token refresh, then ``AuthRevoked``. Vendor answers become domain errors in :func:`check`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import requests

from backend.config import Settings
from backend.connectors.common import HttpAnswer, TokenSource, json_body
from backend.connectors.google import batch as batches
from backend.connectors.google.gate import gate_for
from backend.errors import AuthRevoked, CursorExpired, ServiceMisconfigured, Throttled, Unavailable
from backend.net.retry_after import retry_after_seconds

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Backoff for a rate-limit answer without Retry-After (seconds, per attempt), as Google advises.
BACKOFF = (1.0, 2.0, 4.0, 8.0)
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
# The project's daily quota is used up: no login is wrong, every mailbox waits (for hours, not seconds).
DAILY_REASONS = frozenset({"dailyLimitExceeded"})
DAILY_RETRY_SECONDS = 3600.0
Params = Sequence[tuple[str, str]]


class GmailDisabled(AuthRevoked):
    """Gmail is turned off for this account (its organisational unit): every call answers failedPrecondition."""


class GoogleResponse(HttpAnswer):
    """A Google answer (a whole HTTP response or one batch part)."""

    @property
    def reason(self) -> str:
        """The first ``errors[].reason`` of an error body ("" when none)."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(error, dict):
            for item in error.get("errors") or []:
                if isinstance(item, dict) and item.get("reason"):
                    return str(item["reason"])[:60]
            return str(error.get("status", ""))[:60]
        return ""

    @property
    def rate_limited(self) -> bool:
        """True for Google's "slow down" answers (429, or 403 with a rate-limit reason)."""
        return self.status == 429 or (self.status == 403 and self.reason in RATE_REASONS)

    @property
    def busy(self) -> bool:
        """True when Google said when to come back: a rate limit, or a server error with ``Retry-After``."""
        return self.rate_limited or (500 <= self.status < 600 and bool(self.header("Retry-After")))


def check(resp: GoogleResponse) -> GoogleResponse:
    """Map an error answer to a domain error; return successful ones."""
    if 200 <= resp.status < 300:
        return resp
    detail = f" ({resp.status}{', ' + resp.reason if resp.reason else ''})"
    if resp.status == 410:
        raise CursorExpired(f"Google's sync token expired{detail}.")
    if resp.rate_limited:
        raise Throttled(f"Google asked us to slow down{detail}.",
                        retry_after=retry_after_seconds(resp.header("Retry-After"), 60.0))
    if resp.busy:
        # A 5xx that says when to come back: the job's retry waits that long, not its own backoff.
        raise Throttled(f"Google is unavailable for now{detail}.",
                        retry_after=retry_after_seconds(resp.header("Retry-After"), 60.0))
    if resp.status == 401:
        raise AuthRevoked(f"Google refused access to the mailbox{detail}. Connect Gmail again.")
    if resp.status == 400 and resp.reason == "failedPrecondition":
        raise GmailDisabled(f"Gmail is turned off for this account in the Google Admin console{detail}.")
    if resp.status == 403:
        if resp.reason in DAILY_REASONS:
            log.error("google daily quota used up%s", detail)
            raise Throttled(f"Google's daily quota for this server is used up{detail}.",
                            retry_after=DAILY_RETRY_SECONDS)
        if resp.reason in ("accessNotConfigured", "SERVICE_DISABLED"):
            log.error("google api not enabled for our project%s", detail)
            raise ServiceMisconfigured(f"The Gmail or Calendar API is not enabled for this server{detail}.")
        raise AuthRevoked(f"Google refused access to the mailbox{detail}. Connect Gmail again.")
    raise Unavailable(f"Google answered an error{detail}.")


class GoogleClient:
    """Authenticated requests to the Gmail and Calendar APIs for one account, within Google's limits."""

    def __init__(self, settings: Settings, tokens: TokenSource, gate_key: str, session: requests.Session) -> None:
        self.settings = settings
        self.tokens = tokens
        self.session = session
        self.gate = gate_for(gate_key)
        self.max_wait = float(settings.GOOGLE_MAX_WAIT_SECONDS)
        self.gmail_root = settings.GMAIL_API_URL.rstrip("/")
        self._calls = 0
        self._units = 0
        self._lock = threading.Lock()
        self._token: str | None = None

    @property
    def calls(self) -> int:
        """Requests made (each batch part counts, as Google counts it)."""
        return self._calls

    @property
    def units(self) -> int:
        """Quota units spent."""
        return self._units

    def _count(self, calls: int, units: int) -> None:
        with self._lock:
            self._calls += calls
            self._units += units

    def _bearer(self, refresh: bool) -> str:
        if refresh or self._token is None:
            self._token = self.tokens.access_token(force_refresh=refresh)
        return self._token

    def _wait(self, resp: GoogleResponse, attempt: int) -> None:
        """Wait out a short hint (holding the gate) or raise Throttled."""
        wait = retry_after_seconds(resp.header("Retry-After"), BACKOFF[min(attempt, len(BACKOFF) - 1)])
        if wait > self.max_wait or attempt + 1 >= MAX_ATTEMPTS:
            raise Throttled(f"Google asked us to wait {wait:.0f} s.", retry_after=wait)
        self.gate.hold_off(wait)
        log.info("google %s %s: waiting %.1f s (attempt %d)", resp.status, resp.reason, wait, attempt + 1)

    def _again(self, resp: GoogleResponse, attempt: int, refreshed: bool) -> bool:
        """Whether to send a request again: a "come back later" waited out (or Throttled raised), or a first 401."""
        if resp.busy:
            self._wait(resp, attempt)
            return True
        # A 401 is never a rate limit, so the caller refreshes the token exactly when the status says 401.
        return resp.status == 401 and not refreshed

    def _send(self, method: str, url: str, headers: dict[str, str], data: bytes | None, calls: int, units: int,
              refresh: bool) -> requests.Response:
        token = self._bearer(refresh)
        with self.gate.slot(units, self.max_wait):
            try:
                raw = self.session.request(method, url, data=data, headers={
                    "Accept": "application/json", **headers, "Authorization": f"Bearer {token}"})
            except requests.RequestException as exc:
                raise Unavailable(f"Google could not be reached ({type(exc).__name__}).") from None
        self._count(calls, units)
        return raw

    def get(self, url: str, params: Params = (), units: int = 1, accept: tuple[int, ...] = ()) -> GoogleResponse:
        """GET with retries (rate limits waited out, one token refresh on 401); ``accept``ed statuses returned."""
        full = f"{url}?{urlencode(list(params))}" if params else url
        refresh = False
        for attempt in range(MAX_ATTEMPTS):
            raw = self._send("GET", full, {}, None, 1, units, refresh)
            resp = GoogleResponse(raw.status_code, dict(raw.headers), json_body(raw))
            if resp.status in accept:
                return resp
            if self._again(resp, attempt, refresh):
                refresh = refresh or resp.status == 401
                continue
            return check(resp)
        raise Unavailable("Google kept refusing the request.")

    def post(self, url: str, body: Any, units: int) -> GoogleResponse:
        """POST a JSON body (``users.watch``, ``users.stop``) with the same retries as :meth:`get`; unchecked."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        refresh = False
        for attempt in range(MAX_ATTEMPTS):
            raw = self._send("POST", url, headers, data, 1, units, refresh)
            resp = GoogleResponse(raw.status_code, dict(raw.headers), json_body(raw))
            if self._again(resp, attempt, refresh):
                refresh = refresh or resp.status == 401
                continue
            return resp
        raise Unavailable("Google kept refusing the request.")

    def batch(self, paths: list[str], units_each: int) -> list[GoogleResponse]:
        """GETs on ``paths`` (under the Gmail host) in batches of at most 50; parts returned unchecked, in order.

        Rate-limited parts (and 5xx parts with Retry-After) are sent again after the wait; a 401 on a part
        gets one token refresh.
        """
        results: dict[int, GoogleResponse] = {}
        for start in range(0, len(paths), batches.MAX_PARTS):
            pending = dict(enumerate(paths[start:start + batches.MAX_PARTS], start=start))
            refresh = False
            for attempt in range(MAX_ATTEMPTS):
                order = list(pending)
                content_type, body = batches.encode([pending[i] for i in order])
                raw = self._send("POST", f"{self.gmail_root}/batch/gmail/v1", {"Content-Type": content_type}, body,
                                 len(order), units_each * len(order), refresh)
                if raw.status_code != 200:
                    outer = GoogleResponse(raw.status_code, dict(raw.headers), json_body(raw))
                    if self._again(outer, attempt, refresh):
                        refresh = refresh or outer.status == 401
                        continue
                    check(outer)
                answers = batches.decode(raw.headers.get("Content-Type", ""), raw.content, len(order))
                waits = self._settle(order, answers, pending, results, refresh)
                if not pending:
                    break
                if any(w.status == 401 for w in waits):
                    refresh = True
                limited = [w for w in waits if w.busy]
                if limited:
                    self._wait(max(limited, key=lambda w: retry_after_seconds(w.header("Retry-After"), 0.0)),
                               attempt)
            if pending:
                raise Unavailable("Google kept failing part of a batch.")
        return [results[i] for i in range(len(paths))]

    @staticmethod
    def _settle(order: list[int], answers: dict[int, batches.PartAnswer], pending: dict[int, str],
                results: dict[int, GoogleResponse], refreshed: bool) -> list[GoogleResponse]:
        """Move final part answers to ``results``; return the ones to send again (busy answers, a first 401)."""
        again: list[GoogleResponse] = []
        for position, index in enumerate(order):
            answer = answers.get(position)
            if answer is None:
                again.append(GoogleResponse(503, {}, {}))
                continue
            resp = GoogleResponse(answer.status, answer.headers, answer.body)
            if resp.busy or (resp.status == 401 and not refreshed):
                again.append(resp)
                continue
            results[index] = resp
            del pending[index]
        return again

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()
