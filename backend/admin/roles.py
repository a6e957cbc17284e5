"""Who is an administrator: asked of Salesforce with the person's own token, kept at most five minutes."""

from __future__ import annotations

import time

from backend.config import Settings
from backend.connectors.crm import CrmRequestFailed
from backend.connectors.salesforce import SalesforceClient, SalesforceCredentials, SalesforceOAuth, grants_admin
from backend.store import Store
from backend.store.users import User

ADMIN_CHECK_SECONDS = 300


def is_admin(store: Store, settings: Settings, oauth: SalesforceOAuth, user: User, now: float | None = None) -> bool:
    """True when ``user`` administers their org's Sidebar Sync (AuthRevoked/Unavailable propagate)."""
    now = time.time() if now is None else now
    if 0 <= now - user.admin_checked_at < ADMIN_CHECK_SECONDS:
        return user.is_admin
    credentials = SalesforceCredentials(oauth, store.secrets, user.id, user.login_url, user.instance_url)
    client = SalesforceClient(settings, credentials)
    try:
        admin = grants_admin(client, user.sf_user_id)
    except CrmRequestFailed:
        # Salesforce refused the query (a user without access to setup objects): not an admin.
        admin = False
    finally:
        client.close()
    store.users.update(user.id, is_admin=admin, admin_checked_at=now)
    user.is_admin, user.admin_checked_at = admin, now
    return admin
