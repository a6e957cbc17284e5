"""Connecting a mailbox ("Connect to Exchange"): prove a login and password, learn how to talk to the server.

:func:`connect` (used by ``POST /api/sync/exchange``) finds the EWS endpoint (the given URL, or
Autodiscover), checks the host with the outbound guard, learns the server's authentication method
(one unauthenticated POST: ``401`` + ``WWW-Authenticate``) and version (exchangelib's ConvertId
probe, the first authenticated call), then resolves the mailbox's primary SMTP address and aliases
with ResolveNames. Every failure becomes ``SetupFailed(code, message)`` with a code the task pane
shows (``auth_failed``, ``ews_unreachable``, ``host_not_allowed``, ``not_ews``, ``tls_error``,
``timeout``, ``ews_error``, ``mailbox_not_found``); a cut attempt answers ``timeout``. Nothing is
stored here; the caller activates on success.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from exchangelib.protocol import Protocol
from exchangelib.transport import BASIC, NTLM

from backend.config import Settings
from backend.connectors.exchange.autodiscover import discover_ews_url, discovery_email, normalise_ews_url
from backend.connectors.exchange.directory import resolve_identity
from backend.connectors.exchange.errors import HostUnconfirmed, not_ews, setup_error
from backend.connectors.exchange.transport import Transport, build_text
from backend.connectors.mailbox import MailboxIdentity
from backend.errors import SetupFailed
from backend.net import Resolver

# A minimal, valid EWS request for the authentication probe; servers answer it with 401 first.
_PROBE_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    '<s:Header><t:RequestServerVersion Version="Exchange2013"/></s:Header>'
    '<s:Body><m:ResolveNames ReturnFullContactData="false"><m:UnresolvedEntry>probe</m:UnresolvedEntry>'
    "</m:ResolveNames></s:Body></s:Envelope>"
)


@dataclass(frozen=True)
class ExchangeConnection:
    """What a successful connect learned (no secret in it)."""

    identity: MailboxIdentity
    login: str
    ews_url: str
    auth_type: str  # exchangelib's name: "NTLM" or "basic"
    version: str  # server build, e.g. "15.1.2507.6"
    autodiscovered: bool
    calls: int = 0

    def connection(self) -> dict[str, Any]:
        """The non-secret details ``activate`` stores and :func:`open_mailbox` reads."""
        return {
            "login": self.login,
            "ews_url": self.ews_url,
            "auth_type": self.auth_type,
            "version": self.version,
            "autodiscovered": self.autodiscovered,
        }



def connect(
    settings: Settings,
    login: str,
    password: str,
    ews_url: str | None = None,
    *,
    email_hint: str = "",
    resolver: Resolver | None = None,
) -> ExchangeConnection:
    """Prove ``login``/``password`` against Exchange and read the mailbox identity (SetupFailed otherwise).

    ``email_hint`` (the add-in mailbox) is used for Autodiscover when the login is ``DOMAIN\\user``.
    Time is bounded by ``EWS_CONNECT_DEADLINE_SECONDS`` in total.
    """
    transport = Transport(settings, resolver, deadline_seconds=settings.EWS_CONNECT_DEADLINE_SECONDS)
    protocol: Protocol | None = None
    try:
        autodiscovered = not ews_url
        if ews_url:
            url = normalise_ews_url(ews_url)
        else:
            url = discover_ews_url(transport, settings, login, password, email_hint)
            _, domain = discovery_email(login, email_hint)
            if not transport.may_send_credentials(url, domain):
                # Another organisation's host (or a name only its DNS vouches for): show it, send nothing.
                raise HostUnconfirmed(url, domain)
        _precheck(transport, url)
        auth_type = _probe_auth(transport, url)
        protocol = transport.protocol(url, login, password, auth_type, None)
        transport.credentials_sent = True
        version = protocol.version  # exchangelib's version probe: the first authenticated request
        identity = resolve_identity(protocol, login)
        return ExchangeConnection(identity=identity, login=login, ews_url=url, auth_type=auth_type,
                                  version=build_text(version), autodiscovered=autodiscovered, calls=transport.calls)
    except Exception as exc:  # noqa: BLE001 - every failure must become a specific answer, never a 500
        error = setup_error(exc, transport.timed_out())
        error.credentials_sent = transport.credentials_sent  # attempt limits count only these
        raise error from None
    finally:
        if protocol is not None:
            protocol.close()


def _precheck(transport: Transport, url: str) -> None:
    """Refuse a host before sending anything (the connection checks again when it opens)."""
    try:
        transport.guard.check(url, timeout=transport.left())
    except socket.gaierror:
        raise SetupFailed("ews_unreachable", f"The server {urlsplit(url).hostname} was not found. Check the "
                                             "address, or enter the EWS URL under More.") from None


def _probe_auth(transport: Transport, url: str) -> str:
    """One unauthenticated POST: which method the server asks for (it must look like EWS)."""
    session = transport.session()
    try:
        response = session.post(url, data=_PROBE_REQUEST.encode(), allow_redirects=False,
                                headers={"Content-Type": "text/xml; charset=utf-8"})
        response.close()
    finally:
        session.close()
    if response.status_code == 401:
        offered = response.headers.get("WWW-Authenticate", "").lower()
        methods = {part.strip().split(" ", 1)[0] for part in offered.split(",")}
        if "ntlm" in methods or ("negotiate" in methods and "ntlm" in offered):
            return NTLM
        if "basic" in methods:
            return BASIC
        raise SetupFailed("ews_error", "The Exchange server asks for a sign-in method this service does not "
                                       "support (NTLM or Basic are). Ask your administrator.")
    if response.status_code >= 500:
        raise SetupFailed("ews_error", f"The Exchange server answered with an error (HTTP {response.status_code}). "
                                       "Try again later.")
    raise not_ews()
