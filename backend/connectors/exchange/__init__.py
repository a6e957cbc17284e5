"""On-premises Exchange through EWS: the connector lives in :mod:`.reader` while it is split by concern."""

from __future__ import annotations

from backend.connectors.exchange.reader import (
    PROVIDER,
    REQUEST_DEADLINE_FACTOR,
    SECRET_PASSWORD,
    ExchangeConnection,
    ExchangeMailbox,
    _account,
    _Transport,
    connect,
    normalise_ews_url,
    open_mailbox,
    resolve_identity,
)

__all__ = [
    "PROVIDER",
    "REQUEST_DEADLINE_FACTOR",
    "SECRET_PASSWORD",
    "ExchangeConnection",
    "ExchangeMailbox",
    "_Transport",
    "_account",
    "connect",
    "normalise_ews_url",
    "open_mailbox",
    "resolve_identity",
]
