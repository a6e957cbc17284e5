"""Microsoft 365 mailboxes: Microsoft Graph delta reads and the Microsoft identity (msal) client."""

from backend.connectors.graph.identity import (
    CACHE_SECRET,
    GRAPH_SCOPES,
    MULTI_TENANT,
    AppOnlyTokens,
    Grant,
    MailboxTokens,
    MicrosoftAuth,
    TokenSource,
    check_app_only,
    default_tenant,
    valid_tenant,
)
from backend.connectors.graph.reader import (
    MESSAGE_FIELDS,
    GraphMailbox,
    graph_identity,
    identity_from,
    open_mailbox,
    parse_email,
    parse_event,
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
