"""The REST client of one run: simple-salesforce calls, refresh-once, API usage, vendor errors -> domain errors.

Every call goes through :meth:`SalesforceClient.call`: an expired session is refreshed once and the
call retried (:meth:`SalesforceCredentials.call`), ``REQUEST_LIMIT_EXCEEDED`` is
:class:`ApiLimitExceeded`, 420/429 is ``Throttled``, network trouble and 5xx are ``Unavailable``.
Error messages carry Salesforce's error codes, never record content.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from backend.config import Settings
from backend.connectors.crm import ApiLimitExceeded, ApiUsage, CrmRequestFailed
from backend.connectors.salesforce.credentials import SalesforceCredentials
from backend.connectors.salesforce.oauth import TokenExpired
from backend.errors import AnswerLate, Throttled, Unavailable
from backend.net.outbound import make_session

T = TypeVar("T")


def _error_code(exc: SalesforceError) -> tuple[str, str]:
    """Salesforce's error code and message from a vendor exception (the body is a list or a dict)."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", "")), str(content[0].get("message", ""))[:200]
    if isinstance(content, dict):
        return str(content.get("errorCode", content.get("error", ""))), str(content.get("message", ""))[:200]
    return "", ""


def _translated(exc: Exception) -> Exception:
    """The domain error for a vendor or network exception raised by one REST call."""
    if isinstance(exc, SalesforceExpiredSession):
        return TokenExpired()
    if isinstance(exc, SalesforceRefusedRequest):
        code, _ = _error_code(exc)
        if code == "REQUEST_LIMIT_EXCEEDED":
            return ApiLimitExceeded()
        return CrmRequestFailed(f"Salesforce refused the request ({code or exc.status}).")
    if isinstance(exc, SalesforceGeneralError):
        code, _ = _error_code(exc)
        if exc.status in (420, 429):
            return Throttled(f"Salesforce asked us to slow down ({code or exc.status}).", 60.0)
        if exc.status >= 500:
            return Unavailable(f"Salesforce answered {exc.status} ({code or 'server error'}).")
        return CrmRequestFailed(f"Salesforce answered {exc.status} ({code}).")
    if isinstance(exc, SalesforceError):
        code, _ = _error_code(exc)
        return CrmRequestFailed(f"Salesforce refused the request ({code or exc.status}).")
    if isinstance(exc, requests.ReadTimeout):
        # Sent, unanswered: a write may still commit (claims stay in doubt, sync/claims.py).
        return AnswerLate("Salesforce did not answer in time.")
    if isinstance(exc, requests.Timeout):
        return Unavailable("Salesforce did not answer in time.")
    if isinstance(exc, requests.RequestException):
        return Unavailable(f"Salesforce could not be reached ({type(exc).__name__}).")
    return Unavailable("Salesforce answered something that is not JSON.")


def encode_body(body: Any) -> bytes:
    """``body`` as JSON (by msgspec: a write call's 1,000 records take a seventh of the json module's time).

    A lone surrogate in some value (mail in odd charsets decodes into them) is written as "?": one
    odd field must not fail the whole call, and with it every rerun of the batch.
    """
    try:
        return msgspec.json.encode(body)
    except UnicodeEncodeError:
        return json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")


class SalesforceClient:
    """Salesforce's REST API for one run of one user: counts calls and follows the org's API usage."""

    def __init__(
        self,
        settings: Settings,
        credentials: SalesforceCredentials,
        on_usage: Callable[[ApiUsage], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.on_usage = on_usage
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)
        self._calls = 0
        self._usage: ApiUsage | None = None
        self._client_cache: tuple[str, str, Salesforce] | None = None

    @property
    def calls(self) -> int:
        """REST API calls made by this client (token refreshes are not API calls)."""
        return self._calls

    @property
    def last_usage(self) -> ApiUsage | None:
        """The org's usage from the last response's ``Sforce-Limit-Info`` header."""
        return self._usage

    @property
    def path(self) -> str:
        """The versioned REST path (``/services/data/vXX.X``) that subrequest URLs start with."""
        return f"/services/data/v{self.settings.SALESFORCE_API_VERSION}"

    def _client(self, instance_url: str, token: str) -> Salesforce:
        # One simple-salesforce object per token: a refresh builds a new one, other calls reuse it.
        cached = self._client_cache
        if cached and cached[0] == instance_url and cached[1] == token:
            return cached[2]
        # Answers parsed as plain dicts (the default hook builds an OrderedDict per JSON object).
        sf = Salesforce(instance_url=instance_url, session_id=token, version=self.settings.SALESFORCE_API_VERSION,
                        session=self.session, object_pairs_hook=None)
        self._client_cache = (instance_url, token, sf)
        return sf

    def _report(self, usage: ApiUsage) -> None:
        self._usage = usage
        if self.on_usage is not None:
            self.on_usage(usage)

    def call(self, op: Callable[[Salesforce], T]) -> T:
        """Run one REST call with refresh-once on an expired session, translating vendor errors."""

        def attempt(instance_url: str, token: str) -> T:
            sf = self._client(instance_url, token)
            self._calls += 1
            try:
                return op(sf)
            except (SalesforceError, requests.RequestException, ValueError) as exc:
                raise _translated(exc) from None
            finally:
                # simple-salesforce keeps the Sforce-Limit-Info header of the last response, even a failed one.
                usage = sf.api_usage.get("api-usage")
                if usage is not None:
                    fresh = ApiUsage(int(usage.used), int(usage.total))
                    if fresh != self._usage:
                        self._report(fresh)

        return self.credentials.call(attempt)

    def composite(self, subrequests: list[dict[str, Any]], timeout: float | None = None) -> list[dict[str, Any]]:
        """Send subrequests as one Composite request (one API call); their responses, in any order."""
        body = {"allOrNone": False, "collateSubrequests": False, "compositeRequest": subrequests}
        kwargs: dict[str, Any] = {"data": encode_body(body), "headers": {"Content-Type": "application/json"}}
        if timeout:
            kwargs["timeout"] = (10.0, timeout)
        try:
            result = self.call(lambda sf: sf.restful("composite", method="POST", **kwargs))
        except AnswerLate as exc:
            if all(str(r.get("method", "GET")).upper() == "GET" for r in subrequests):
                # Only queries: nothing can still be committing, so nothing is in doubt.
                raise Unavailable(str(exc)) from exc
            raise
        responses = (result or {}).get("compositeResponse")
        if not isinstance(responses, list):
            raise Unavailable("Salesforce answered a composite request with something unexpected.")
        return responses

    def all_records(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The records of a query result, following ``nextRecordsUrl`` for results over one page."""
        records = [r for r in body.get("records") or [] if isinstance(r, dict)]
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            next_url = str(body["nextRecordsUrl"])
            body = self.call(lambda sf, url=next_url: sf.query_more(url, identifier_is_url=True))  # type: ignore[misc]
            records.extend(r for r in body.get("records") or [] if isinstance(r, dict))
        return records

    def api_usage(self) -> ApiUsage | None:
        """The org's daily API usage from the Limits resource (one call)."""
        data = self.call(lambda sf: sf.limits())
        daily = (data or {}).get("DailyApiRequests") or {}
        try:
            limit = int(daily["Max"])
            used = limit - int(daily["Remaining"])
        except (KeyError, TypeError, ValueError):
            return self._usage
        self._report(ApiUsage(used, limit))
        return self._usage

    def close(self) -> None:
        """Release connections."""
        self.session.close()
