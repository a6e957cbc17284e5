"""Gmail and Google Workspace mailboxes: the Gmail and Calendar APIs, and the Google OAuth client.

One concern a module, the layers inside pointing one way (reader -> mail/calendar/cursor/items ->
http/batch/gate -> tokens -> oauth):

* ``reader``: :class:`GmailMailbox` (the Mailbox protocol), :func:`open_mailbox`, :func:`google_identity`;
* ``mail``: a folder's backfill (``messages.list``) and changes (``history.list``); ``calendar``:
  ``events.list`` with sync tokens; ``cursor``: what a folder's saved cursor holds; ``items``:
  Gmail and Calendar JSON as our items;
* ``http``: the Google HTTP client (Retry-After, rate limits, vendor errors as domain errors);
  ``batch``: Gmail's multipart batch format; ``gate``: requests in flight and quota units per user;
* ``tokens``: access tokens from the stored refresh token (google-auth); ``oauth``: the consent
  dialog's web-server flow (state, PKCE S256, offline access) and revocation.
"""

from backend.connectors.common import pkce_pair
from backend.connectors.google.oauth import SCOPES, GoogleAuth, GoogleGrant, consent_error
from backend.connectors.google.reader import GmailMailbox, google_identity, open_mailbox
from backend.connectors.google.tokens import REFRESH_SECRET, MailboxTokens, StaticToken

__all__ = [
    "REFRESH_SECRET",
    "SCOPES",
    "GmailMailbox",
    "GoogleAuth",
    "GoogleGrant",
    "MailboxTokens",
    "StaticToken",
    "consent_error",
    "google_identity",
    "open_mailbox",
    "pkce_pair",
]
