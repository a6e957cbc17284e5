"""Vendor failures (exchangelib, requests, TLS, the host guard) as our domain errors.

At the boundary: rejected credentials -> ``AuthRevoked``; ``ErrorServerBusy`` (its
``BackOffMilliseconds``, or a 503's ``Retry-After``) -> ``Throttled``; connection failures,
timeouts, TLS failures and other server errors -> ``Unavailable``. While connecting, every failure
is a ``SetupFailed(code, message)`` instead. Vendor exception texts can hold server responses, so
messages are our own, and kinds are judged by exception types, not texts.
"""

from __future__ import annotations

import logging
import re
import ssl
from urllib.parse import urlsplit

import requests
from exchangelib import errors as ews_errors
from lxml import etree

from backend.errors import AuthRevoked, ConnectorError, SetupFailed, Throttled, Unavailable
from backend.net import HostNotAllowed

log = logging.getLogger(__name__)

DEFAULT_THROTTLE_SECONDS = 60.0
_STATUS = re.compile(r"Code: (\d{3})")
_TIMEOUT_MESSAGE = ("The Exchange server did not answer in time. Try again later, or check the EWS URL under "
                    "More.")
_NOT_EWS_MESSAGE = ("This address answered, but not as Exchange Web Services. Check the EWS URL (it usually "
                    "ends in /EWS/Exchange.asmx).")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def network_kind(exc: BaseException) -> str | None:
    """'tls', 'timeout' or 'connect' when a network failure is behind ``exc``."""
    # Judged by exception types along the chain only: vendor messages can quote server responses.
    chain = _chain(exc)
    if any(isinstance(e, requests.exceptions.SSLError | ssl.SSLError) for e in chain):
        return "tls"
    if any(isinstance(e, requests.exceptions.Timeout | TimeoutError) for e in chain):
        return "timeout"
    if any(isinstance(e, requests.exceptions.ConnectionError | ConnectionError) for e in chain):
        return "connect"
    if isinstance(exc, ews_errors.ErrorTimeoutExpired):
        return "connect"
    return None


def translate(exc: BaseException) -> ConnectorError:
    """A vendor error from a sync run as a domain error."""
    if isinstance(exc, ConnectorError) and not isinstance(exc, SetupFailed):
        return exc
    if isinstance(exc, HostNotAllowed):
        # The stored host now resolves to a refused address: no data flows; a later run may work.
        return Unavailable("The Exchange server's address is not allowed any more; sync waits until it is.")
    if isinstance(exc, ews_errors.UnauthorizedError | ews_errors.ErrorAccessDenied
                  | ews_errors.ErrorNonExistentMailbox | ews_errors.ErrorImpersonateUserDenied):
        return AuthRevoked("Exchange no longer accepts the saved login and password.")
    if isinstance(exc, ews_errors.ErrorServerBusy):
        return Throttled("Exchange is busy and asked us to wait.",
                         retry_after=float(exc.back_off or DEFAULT_THROTTLE_SECONDS))
    if isinstance(exc, ews_errors.RateLimitError):
        return Throttled("Exchange is busy and asked us to wait.", retry_after=float(exc.wait))
    kind = network_kind(exc)
    if kind == "tls":
        return Unavailable("The Exchange server's certificate is not trusted or has expired.")
    if kind == "timeout":
        return Unavailable("The Exchange server did not answer in time.")
    if kind == "connect":
        return Unavailable("The Exchange server could not be reached.")
    log.warning("exchange error %s", type(exc).__name__)
    return Unavailable(f"Exchange answered with an error ({type(exc).__name__}).")


AUTH_FAILED_MESSAGE = "Exchange did not accept this login and password. Check them and try again."


class HostUnconfirmed(SetupFailed):
    """Autodiscover named an EWS URL outside the login's domain: nothing was sent; the person must confirm it."""

    def __init__(self, ews_url: str, domain: str) -> None:
        host = urlsplit(ews_url).hostname or ews_url
        super().__init__("ews_host_unconfirmed",
                         f"Autodiscover for {domain} named the Exchange server {host}, which is outside {domain}, "
                         f"so we did not send your password there. If {host} is your organisation's Exchange "
                         "server, confirm it to connect.")
        self.ews_url = ews_url


def setup_error(exc: BaseException, timed_out: bool = False) -> SetupFailed:
    """A failure while connecting as a code and message for the person (``timed_out``: the deadline cut it)."""
    if timed_out and (not isinstance(exc, SetupFailed) or exc.code == "ews_unreachable"):
        # A cut connection surfaces as a dropped connection or a truncated body: say what happened.
        return SetupFailed("timeout", _TIMEOUT_MESSAGE)
    if isinstance(exc, SetupFailed):
        return exc
    if isinstance(exc, ews_errors.UnauthorizedError):
        if "locked out" in str(exc):
            return SetupFailed("auth_failed", "Exchange says this account is locked out. Ask your administrator.")
        return SetupFailed("auth_failed", AUTH_FAILED_MESSAGE)
    kind = network_kind(exc)
    if kind == "tls":
        return SetupFailed("tls_error", "The Exchange server's certificate is expired or not trusted, so we did "
                                        "not send your password. Ask your administrator.")
    if kind == "timeout":
        return SetupFailed("timeout", _TIMEOUT_MESSAGE)
    if kind == "connect":
        return SetupFailed("ews_unreachable", "We could not reach the Exchange server. Check the address, or "
                                              "enter the EWS URL under More.")
    if isinstance(exc, ews_errors.ErrorServerBusy | ews_errors.RateLimitError):
        return SetupFailed("ews_error", "Exchange is busy right now. Try again in a few minutes.")
    if isinstance(exc, ews_errors.MalformedResponseError):
        status = _STATUS.search(str(exc))
        if status and status.group(1).startswith("5"):
            return SetupFailed("ews_error", f"The Exchange server answered with an error (HTTP {status.group(1)}). "
                                            "Try again later.")
        return SetupFailed("not_ews", _NOT_EWS_MESSAGE)
    if isinstance(exc, ews_errors.SOAPError | ews_errors.TransportError | etree.XMLSyntaxError) and not isinstance(
        exc, ews_errors.ResponseMessageError
    ):
        return SetupFailed("not_ews", _NOT_EWS_MESSAGE)
    log.warning("exchange connect error %s", type(exc).__name__)
    return SetupFailed("ews_error", "The Exchange server answered with an error. Try again later.")


def not_ews() -> SetupFailed:
    """The answer for a URL that responds, but not as EWS."""
    return SetupFailed("not_ews", _NOT_EWS_MESSAGE)
