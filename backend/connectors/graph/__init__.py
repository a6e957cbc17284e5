"""Microsoft 365 mailboxes: Microsoft Graph delta reads and the Microsoft identity (Entra ID, msal) client.

One concern a module, the layers inside pointing one way (reader -> mail/calendar/cursor/items ->
http/gate -> tokens -> identity -> signin_errors/entra):

* ``reader``: :class:`GraphMailbox` (the Mailbox protocol), :func:`open_mailbox`, :func:`graph_identity`;
* ``mail`` / ``calendar``: the message delta per folder and the calendarView delta with its rolling range;
* ``cursor``: what a folder's saved cursor holds; ``items``: Graph JSON as our items;
* ``http``: the Graph HTTP client (Retry-After, ``$batch``, vendor errors as domain errors);
  ``gate``: at most 4 requests in flight per mailbox;
* ``tokens``: per-mailbox, app-only and static token sources; ``identity``: :class:`MicrosoftAuth`
  (consent, on-behalf-of, admin consent); ``signin_errors``: Entra answers as domain errors;
  ``entra``: scopes, tenants, authority URLs.
"""

from backend.connectors.common import TokenSource
from backend.connectors.graph.entra import GRAPH_SCOPES, MULTI_TENANT, default_tenant, valid_tenant
from backend.connectors.graph.identity import Grant, MicrosoftAuth
from backend.connectors.graph.items import MESSAGE_FIELDS, identity_from, parse_email, parse_event
from backend.connectors.graph.reader import GraphMailbox, graph_identity, open_mailbox
from backend.connectors.graph.tokens import (
    CACHE_SECRET,
    AppOnlyTokens,
    MailboxTokens,
    StaticToken,
    check_app_only,
)

__all__ = [
    "CACHE_SECRET",
    "GRAPH_SCOPES",
    "MESSAGE_FIELDS",
    "MULTI_TENANT",
    "AppOnlyTokens",
    "Grant",
    "GraphMailbox",
    "MailboxTokens",
    "MicrosoftAuth",
    "StaticToken",
    "TokenSource",
    "check_app_only",
    "default_tenant",
    "graph_identity",
    "identity_from",
    "open_mailbox",
    "parse_email",
    "parse_event",
    "valid_tenant",
]
