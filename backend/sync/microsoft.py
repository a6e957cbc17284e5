"""Microsoft 365 sync started on-behalf-of, right after a Salesforce login proven by NAA.

The session view calls :func:`activate_on_behalf_of` explicitly once a login's add-in mailbox is
verified: if the person (or their administrator) already consented, sync starts with no further
step; if not, sync stays not activated and ``GET /api/sync`` suggests Microsoft consent.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from backend.config import Settings
from backend.connectors.graph import CACHE_SECRET, AppOnlyTokens, MicrosoftAuth, graph_identity
from backend.errors import AuthRevoked, SetupFailed, Throttled, Unavailable
from backend.security.identity import VerifiedMailbox
from backend.store import Store
from backend.store.mailboxes import SyncMailbox, SyncState
from backend.store.users import User
from backend.sync.activation import activate, check_mailbox_match

log = logging.getLogger(__name__)

PROVIDER = "microsoft"


def activate_on_behalf_of(store: Store, settings: Settings, auth: MicrosoftAuth, user: User,
                          verified: VerifiedMailbox) -> SyncMailbox | None:
    """Start Microsoft 365 sync when consent exists: the activated mailbox, else None (never raises when expected)."""
    if verified.kind != "naa" or not verified.assertion or not settings.microsoft_configured:
        return None
    mailbox = store.mailboxes.ensure(user.id, user.org_id)
    if mailbox.state is not SyncState.NOT_ACTIVATED:
        return None  # running, paused, deactivated by choice, or waiting for the person: theirs to change
    try:
        grant = auth.on_behalf_of(verified.assertion, verified.tenant_id)
        if grant.tenant_id != verified.tenant_id:
            log.warning("microsoft on-behalf-of answered for another tenant uid=%s", user.id)
            return None
        identity = graph_identity(settings, grant.access_token, session=auth.session)
        check_mailbox_match(verified.address, identity)
    except SetupFailed as exc:
        if exc.code == "consent_required" and store.tenants.has_consent(verified.tenant_id) and \
                store.org_access.tenant_owner(verified.tenant_id) in ("", user.org_id):
            # A tenant connected to an org is that org's to read app-only, not any Salesforce org's.
            return _activate_app_only(store, settings, auth, user, verified)
        log.info("microsoft on-behalf-of not possible (%s) uid=%s", exc.code, user.id)
        return None
    except (AuthRevoked, Unavailable, Throttled) as exc:
        log.warning("microsoft on-behalf-of failed (%s) uid=%s", exc.code, user.id)
        return None
    activated = activate(store, user, PROVIDER, identity, grant.connection("on_behalf_of"), {CACHE_SECRET: grant.cache})
    log.info("microsoft sync activated on-behalf-of uid=%s tenant=%s", user.id, grant.tenant_id)
    return activated


def _activate_app_only(store: Store, settings: Settings, auth: MicrosoftAuth, user: User,
                       verified: VerifiedMailbox) -> SyncMailbox | None:
    """Tenant-wide consent exists: read the mailbox with application permissions."""
    object_id = verified.identity.rsplit(":", 1)[-1]
    try:
        token = AppOnlyTokens(auth, verified.tenant_id).access_token()
        identity = graph_identity(settings, token, f"/users/{quote(object_id, safe='')}", auth.session)
        check_mailbox_match(verified.address, identity)
    except (SetupFailed, AuthRevoked, Unavailable, Throttled) as exc:
        log.warning("microsoft app-only activation failed (%s) uid=%s", exc.code, user.id)
        return None
    connection = {"app_only": True, "tenant_id": verified.tenant_id, "user_id": object_id, "via": "admin_consent"}
    activated = activate(store, user, PROVIDER, identity, connection, {})
    log.info("microsoft sync activated app-only uid=%s tenant=%s", user.id, verified.tenant_id)
    return activated
