"""The EWS endpoint: the URL a person typed (normalised), or Autodiscover for the login's mailbox.

**Where the password goes.** Discovery asks without credentials first: Autodiscover v2
(``GET /autodiscover/autodiscover.json/v1.0/{email}?Protocol=EWS``, anonymous JSON) on every
candidate host. Only then POX Autodiscover, and only with NTLM (whose handshake never sends the
password itself): Basic is never used during Autodiscover, since it would hand the password to
whichever host answers a candidate name (the bare domain is often a website run by someone else).
Every Autodiscover request goes only to hosts in the login's own domain (the domain itself or a
subdomain; for ``DOMAIN\\user`` the add-in mailbox's domain) or listed in ``EWS_ALLOWED_HOSTS``.
HTTP redirects and ``redirectUrl`` to any other host are not followed at all, and
``redirectAddr`` only within the same domain. The EWS URL an answer names is checked by the same
rule in :func:`backend.connectors.exchange.connect.connect`: outside it, nothing is sent and the
person is shown the host and asked to confirm it (``ews_host_unconfirmed``).
"""

from __future__ import annotations

import html
import json
import logging
import socket
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import requests
import requests_ntlm
from lxml import etree

from backend.config import Settings
from backend.connectors.exchange.errors import AUTH_FAILED_MESSAGE, network_kind, setup_error
from backend.connectors.exchange.transport import Transport
from backend.errors import SetupFailed
from backend.net import HostNotAllowed

log = logging.getLogger(__name__)

MAX_AUTODISCOVER_HOPS = 5
MAX_AUTODISCOVER_BYTES = 512 * 1024
EWS_PATH = "/EWS/Exchange.asmx"

_NS_AD_REQ = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
_NS_AD_OUT = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
_AUTODISCOVER_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>'
    f'<Autodiscover xmlns="{_NS_AD_REQ}"><Request><EMailAddress>{{email}}</EMailAddress>'
    f"<AcceptableResponseSchema>{_NS_AD_OUT}</AcceptableResponseSchema></Request></Autodiscover>"
)
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def normalise_ews_url(url: str) -> str:
    """An EWS URL as we store it: https, no fragment; a bare host gets ``/EWS/Exchange.asmx``."""
    parts = urlsplit(url.strip())
    path = parts.path if parts.path not in ("", "/") else EWS_PATH
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))



class _NoAutodiscover(Exception):
    """This candidate URL did not give an answer (try the next one)."""


@dataclass(frozen=True)
class _AutodiscoverAnswer:
    """What one Autodiscover exchange named: an EWS URL, or another address to discover."""

    ews_url: str = ""
    redirect_address: str = ""


V2_PATH = "/autodiscover/autodiscover.json/v1.0/"
_NOT_FOUND = ("We could not find your Exchange server automatically. Enter its EWS URL under More (it usually "
              "ends in /EWS/Exchange.asmx).")
_BASIC_ONLY = ("Your server's Autodiscover asks for Basic sign-in, which we never use to look for a server (it "
               "would send your password to whichever host answers). Enter your EWS URL under More (it usually "
               "ends in /EWS/Exchange.asmx).")


def discovery_email(login: str, email_hint: str) -> tuple[str, str]:
    """The address Autodiscover looks up and its domain: the login when it is an address, else the add-in's."""
    email = login if "@" in login and "\\" not in login else email_hint
    if "@" not in (email or ""):
        raise SetupFailed("ews_unreachable", "We need your email address to find your Exchange server. Enter it "
                                             "as Login, or enter the EWS URL under More.")
    return email, email.rsplit("@", 1)[1].lower().rstrip(".")


def discover_ews_url(transport: Transport, settings: Settings, login: str, password: str, email_hint: str) -> str:
    """The EWS URL for the login's mailbox via Autodiscover v2, then POX (each candidate and hop guarded)."""
    email, domain = discovery_email(login, email_hint)
    # The credentials stay within this domain (and allow-listed hosts) for the whole discovery.
    seen: set[str] = set()
    basic_only = [False]
    for _ in range(3):  # Autodiscover may redirect to another address (e.g. after a migration)
        seen.add(email.lower())
        answer = _autodiscover_email(transport, settings, login, password, email, domain, basic_only)
        if answer.ews_url:
            if not answer.ews_url.lower().startswith("https://"):
                raise HostNotAllowed("Autodiscover named an EWS URL that is not https.")
            return normalise_ews_url(answer.ews_url)
        email = answer.redirect_address
        if email.lower() in seen or "@" not in email:
            break
        if email.rsplit("@", 1)[1].lower().rstrip(".") != domain:
            # Another organisation's address: discovering it would take our password to its hosts.
            log.info("exchange autodiscover: not following an address redirect to another domain")
            raise SetupFailed("ews_unreachable", "Your organisation's Autodiscover points to another domain, so "
                                                 "we did not send your password there. Enter your EWS URL under "
                                                 "More (it usually ends in /EWS/Exchange.asmx).")
    raise SetupFailed("ews_unreachable", _BASIC_ONLY if basic_only[0] else _NOT_FOUND)


def _autodiscover_email(transport: Transport, settings: Settings, login: str, password: str,
                        email: str, domain: str, basic_only: list[bool]) -> _AutodiscoverAnswer:
    urls = [template.replace("{domain}", domain) for template in settings.EWS_AUTODISCOVER_URLS]
    # Without credentials first: every candidate's Autodiscover v2.
    for url in urls:
        try:
            found = _autodiscover_v2(transport, url, email, domain)
        except HostNotAllowed:
            continue  # the POX pass below reports it
        except (requests.RequestException, TimeoutError) as exc:
            if network_kind(exc) == "tls":
                raise setup_error(exc) from None
            if transport.timed_out():
                raise
            continue
        if found:
            return _AutodiscoverAnswer(ews_url=found)
    refused: HostNotAllowed | None = None
    for url in urls:
        try:
            return _autodiscover_at(transport, url, login, password, email, domain, basic_only)
        except HostNotAllowed as exc:
            refused = refused or exc
        except _NoAutodiscover:
            continue
        except (requests.RequestException, TimeoutError) as exc:
            if network_kind(exc) == "tls":
                raise setup_error(exc) from None
            if transport.timed_out():
                raise  # connect() says "timeout"
            continue
    if refused is not None:
        raise refused
    return _AutodiscoverAnswer()


def _read_limited(response: requests.Response) -> bytes:
    data = b""
    for chunk in response.iter_content(65536):
        data += chunk
        if len(data) > MAX_AUTODISCOVER_BYTES:
            raise _NoAutodiscover()
    return data


def _autodiscover_v2(transport: Transport, pox_url: str, email: str, domain: str) -> str:
    """Anonymous Autodiscover v2 at ``pox_url``'s origin: the EWS URL, or "" (no redirect is followed)."""
    parts = urlsplit(pox_url)
    url = urlunsplit((parts.scheme, parts.netloc, V2_PATH + quote(email, safe="@"), "Protocol=EWS", ""))
    try:
        transport.guard.check(url, timeout=transport.left())
    except socket.gaierror:
        return ""
    if not transport.may_send_credentials(url, domain):
        return ""  # the request names the person: only to the login's organisation
    session = transport.session()
    try:
        response = session.get(url, allow_redirects=False, stream=True, headers={"Accept": "application/json"})
        try:
            if response.status_code != 200:
                return ""
            try:
                data = json.loads(_read_limited(response))
            except (_NoAutodiscover, ValueError):
                return ""
        finally:
            response.close()
    finally:
        session.close()
    found = data.get("Url") if isinstance(data, dict) and str(data.get("Protocol", "")).lower() == "ews" else None
    return found.strip() if isinstance(found, str) else ""


def _autodiscover_at(transport: Transport, url: str, login: str, password: str, email: str,
                     domain: str, basic_only: list[bool]) -> _AutodiscoverAnswer:
    """POST the POX request to ``url``, following redirects hop by hop (each one guarded, none out of ``domain``)."""
    body = _AUTODISCOVER_REQUEST.format(email=html.escape(email)).encode()
    session = transport.session()
    # NTLM only: the handshake starts on the server's 401 and never sends the password itself.
    # Never Basic here, whatever the server offers (issue 18): that is the password in the clear
    # to a host we only guessed from the domain.
    auth = requests_ntlm.HttpNtlmAuth(login, password)
    try:
        for _ in range(MAX_AUTODISCOVER_HOPS * 2):
            try:
                transport.guard.check(url, timeout=transport.left())
            except socket.gaierror:
                raise _NoAutodiscover() from None
            if not transport.may_send_credentials(url, domain):
                # Not the login's organisation: no request at all (the body names the person, and
                # every request carries or invites credentials). This also keeps Basic in the domain.
                log.info("exchange autodiscover: skipped a host outside the login's domain")
                raise _NoAutodiscover()
            response = session.post(url, data=body, auth=auth, allow_redirects=False, stream=True,
                                    headers={"Content-Type": "text/xml; charset=utf-8"})
            if response.history or "Authorization" in response.request.headers:
                transport.credentials_sent = True  # the NTLM handshake ran: the attempt counts
            try:
                if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    transport.guard.check_url(url)  # https only, no credentials: before any further request
                    continue
                if response.status_code == 401:
                    offered = response.headers.get("WWW-Authenticate", "").lower()
                    if "ntlm" in offered or "negotiate" in offered:
                        # Our credentials were refused. Stop at the first refusal: more tries (other
                        # candidates) could lock the person's directory account.
                        raise SetupFailed("auth_failed", AUTH_FAILED_MESSAGE)
                    if "basic" in offered:
                        basic_only[0] = True
                        log.info("exchange autodiscover: a candidate offers only Basic; not used")
                    raise _NoAutodiscover()
                if response.status_code != 200:
                    raise _NoAutodiscover()
                answer = _parse_autodiscover(_read_limited(response))
            finally:
                response.close()
            if answer is None:
                raise _NoAutodiscover()
            if isinstance(answer, str):  # redirectUrl: POST the same request there (checked at the loop's top)
                url = answer
                transport.guard.check_url(url)
                continue
            return answer
    finally:
        session.close()
    raise _NoAutodiscover()


def _parse_autodiscover(data: bytes) -> _AutodiscoverAnswer | str | None:
    """An answer, a redirect URL, or None when this is not a usable Autodiscover response."""
    try:
        root = etree.fromstring(data, parser=_SAFE_XML)
    except (etree.XMLSyntaxError, ValueError):
        return None
    ns = f"{{{_NS_AD_OUT}}}"
    account = root.find(f"{ns}Response/{ns}Account")
    if account is None:
        return None
    action = (account.findtext(f"{ns}Action") or "").strip()
    if action == "redirectAddr":
        return _AutodiscoverAnswer(redirect_address=(account.findtext(f"{ns}RedirectAddr") or "").strip())
    if action == "redirectUrl":
        return (account.findtext(f"{ns}RedirectUrl") or "").strip() or None
    urls: dict[str, str] = {}
    for proto in account.findall(f"{ns}Protocol"):
        kind = (proto.findtext(f"{ns}Type") or "").strip().upper()
        ews = (proto.findtext(f"{ns}EwsUrl") or "").strip()
        if ews:
            urls.setdefault(kind, ews)
    # We connect from outside the organisation's network: the external URL first.
    chosen = urls.get("EXPR") or urls.get("EXCH") or next(iter(urls.values()), "")
    return _AutodiscoverAnswer(ews_url=chosen) if chosen else None
