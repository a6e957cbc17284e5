"""On-premises Exchange through EWS (exchangelib 5.6): connecting a mailbox, and reading its changes.

Two entry points:

* :func:`connect` (used by ``POST /api/sync/exchange``) proves a login and password and reads the
  mailbox's identity; every failure is a ``SetupFailed(code, message)``. Nothing is stored.
* :func:`open_mailbox` (through ``backend.connectors.PROVIDERS``) builds :class:`ExchangeMailbox`,
  the Mailbox protocol over the stored connection.

One concern a module, each with its own notes:

* :mod:`.transport` - guarded sessions, the per-connection exchangelib Protocol, deadlines, retries
* :mod:`.errors` - vendor failures as ``AuthRevoked`` / ``Throttled`` / ``Unavailable`` / ``SetupFailed``
* :mod:`.autodiscover` - the EWS URL: typed (normalised) or found by Autodiscover (v2, then POX over NTLM);
  where the password goes
* :mod:`.directory` - which mailbox a login is (ResolveNames, confirmed against the account's own Inbox)
* :mod:`.connect` - "Connect to Exchange": endpoint, host check, auth probe, version, identity
* :mod:`.cursor` - a folder's stored position (sync state plus the window bounds)
* :mod:`.hierarchy` - which folders changed since the last run (one SyncFolderHierarchy call)
* :mod:`.slices` - EWS answers parsed in 64 KiB slices (exchangelib's default is one byte)
* :mod:`.items` - exchangelib items as EmailItem / EventItem, and the fields asked for
* :mod:`.reader` - :class:`ExchangeMailbox` (SyncFolderItems + GetItem per folder) and :func:`open_mailbox`
"""

from __future__ import annotations

from backend.connectors.exchange.autodiscover import normalise_ews_url
from backend.connectors.exchange.connect import ExchangeConnection, connect
from backend.connectors.exchange.directory import resolve_identity
from backend.connectors.exchange.errors import AUTH_FAILED_MESSAGE, HostUnconfirmed
from backend.connectors.exchange.reader import PROVIDER, SECRET_PASSWORD, ExchangeMailbox, open_mailbox
from backend.connectors.exchange.transport import REQUEST_DEADLINE_FACTOR

__all__ = [
    "AUTH_FAILED_MESSAGE",
    "PROVIDER",
    "REQUEST_DEADLINE_FACTOR",
    "SECRET_PASSWORD",
    "ExchangeConnection",
    "ExchangeMailbox",
    "HostUnconfirmed",
    "connect",
    "normalise_ews_url",
    "open_mailbox",
    "resolve_identity",
]
