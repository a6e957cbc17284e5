"""A fake on-premises Exchange server at the SOAP level (EWS) plus POX Autodiscover, on loopback https.

exchangelib and requests_ntlm talk to it unchanged. What it implements, and how faithfully:

* **Authentication** as IIS does it: a request without credentials gets ``401`` with one
  ``WWW-Authenticate`` header per enabled method (``NTLM``, ``Basic realm=...``). Basic credentials
  are checked on every request. NTLM is the real three-message handshake, bound to the TCP
  connection (keep-alive, as IIS): type 1 -> ``401`` with a type 2 challenge (fresh server challenge,
  target info), type 3 -> the user is looked up by (domain, user name) and its **NTLMv2 NT response
  is recomputed from the stored password and compared**; the connection is then authenticated for
  its later requests. The MIC is checked when the client sends one; channel bindings are not
  (we accept what the client sends); NTLMv1/LM responses are refused. A user is found by email
  address (domain empty, as exchangelib sends ``\\user@domain``) or by ``DOMAIN\\account``.
* **Version**: every SOAP response carries ``ServerVersionInfo`` (Exchange 2016 by default).
* **Operations**: ConvertId (exchangelib's version probe; always ``ErrorInvalidIdMalformed``, as a
  real server answers the dummy id), ResolveNames (directory users by address, alias, account name or
  display-name prefix; ``ReturnFullContactData`` adds the contact with ``SMTP:``/``smtp:`` entries),
  GetFolder (root, msgfolderroot, inbox, sentitems, calendar), FindItem (paging and simple
  date/text restrictions), GetItem (only the requested properties), SyncFolderItems with real sync
  states: each state is a signed token naming (mailbox, folder, change sequence, epoch); a call
  returns the net changes after that sequence, at most ``MaxChangesReturned`` (capped at 512) per
  call, oldest first, with ``IncludesLastItemInRange``. A forged, foreign or expired state answers
  ``ErrorInvalidSyncStateData``. Like Exchange, SyncFolderItems and FindItem refuse ``item:Body``.
  SyncFolderHierarchy lists the mail and calendar folders (Create) without a state, and with one the
  folders whose contents changed since (Update), as Exchange reports a folder whose commit time moved.
* **Failures** on demand (:meth:`FakeEwsState.inject_failure`): ``throttle`` (HTTP 500 SOAP fault
  ``ErrorServerBusy`` with ``BackOffMilliseconds``), ``503`` (with ``Retry-After``), ``unavailable``
  (502 from a proxy), ``500`` (an HTML error page), ``not_ews`` (a 200 HTML page), ``delay`` (sleep
  ``retry_after`` seconds, then answer normally), ``disconnect`` (drop the connection) and ``drip``
  (send the status line and headers at once, then the body one byte every ``retry_after`` seconds,
  giving up after ``DRIP_LIMIT_SECONDS``: a server that never trips a per-read timeout).
* **Autodiscover** (POX, ``POST /autodiscover/autodiscover.xml``): authenticated like EWS; answers
  the EWS URL for a known address, an error for an unknown one, or a configured redirect: an HTTP
  redirect, a ``redirectAddr`` per address, or a ``redirectUrl`` per ``Host`` the request came to
  (one server can play several host names when the test resolves them all to it).
* **Autodiscover v2** (anonymous JSON, ``GET /autodiscover/autodiscover.json/v1.0/{email}?Protocol=EWS``),
  only when ``autodiscover_v2`` is set; otherwise 404, as servers that predate it answer.
* **Identity tokens**: :meth:`FakeEwsState.identity_token` mints what ``getUserIdentityTokenAsync``
  returns (RS256, ``x5t``, ``appctx`` JSON with ``msexchuid``/``version``/``amurl``, string
  ``nbf``/``exp``), signed with the server's key, whose self-signed certificate the authentication
  metadata document at ``GET /autodiscover/metadata/json/1`` publishes (anonymous, as Exchange does);
  ``metadata_override`` serves other bytes there (malformed documents).

The mailbox is seeded and changed through :class:`FakeEwsState` methods, which append to a change
log; that log is what sync states point into.

The package, one concern a module: :mod:`~sandbox.ews.soap` (namespaces, paths, envelopes, faults),
:mod:`~sandbox.ews.state` (users, items, change log, sync states, identity tokens),
:mod:`~sandbox.ews.render` (items as XML, restrictions), :mod:`~sandbox.ews.operations` (the SOAP
operations), :mod:`~sandbox.ews.autodiscover` (POX), :mod:`~sandbox.ews.autodiscover_v2` (JSON),
:mod:`~sandbox.ews.ntlm` (the handshake, by pyspnego's
public acceptor), :mod:`~sandbox.ews.app` (the WSGI app: routing, failures, authentication) and
:mod:`sandbox.keepalive` (the keep-alive HTTPS server, shared with the other fakes).
"""

from __future__ import annotations

from sandbox.ews.app import FakeEws
from sandbox.ews.soap import (
    AUTODISCOVER_PATH,
    EWS_PATH,
    EXCHANGE_PRINCIPAL,
    FOLDER_INFO,
    FOLDERS,
    MAX_SYNC_CHANGES,
    METADATA_PATH,
    SoapError,
)
from sandbox.ews.state import EwsItem, EwsUser, Failure, FakeEwsState, new_signing_key, x5t_of
from sandbox.keepalive import DRIP_LIMIT_SECONDS, KeepAliveFakeServer
from sandbox.tls import CertPair

__all__ = [
    "AUTODISCOVER_PATH", "DRIP_LIMIT_SECONDS", "EWS_PATH", "EXCHANGE_PRINCIPAL", "FOLDERS", "FOLDER_INFO",
    "MAX_SYNC_CHANGES", "METADATA_PATH", "EwsItem", "EwsUser", "Failure", "FakeEws", "FakeEwsState",
    "KeepAliveFakeServer", "SoapError", "new_signing_key", "start_fake_ews", "x5t_of",
]


def start_fake_ews(cert: CertPair, state: FakeEwsState | None = None) -> tuple[FakeEwsState, KeepAliveFakeServer]:
    """Start a fake Exchange server; its state's ``base_url`` is set to the server's origin."""
    state = state or FakeEwsState()
    server = KeepAliveFakeServer(FakeEws(state), cert).start()
    assert isinstance(server, KeepAliveFakeServer)
    state.base_url = server.url
    return state, server
