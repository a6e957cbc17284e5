"""Mass activation: an administrator turns sync on for many people of their org at once.

For a slice of addresses (the job calls :func:`activate_slice` slice by slice):

1. the org's Salesforce users by ``User.Email`` (batched SOQL through the admin's own login);
2. the mailboxes at the provider, with the org's access (:mod:`backend.sync.org_providers`: for
   Microsoft 365 Graph app-only in the consented tenant, ``$batch`` directory entry + probe);
3. per person: left alone when sync already runs (a personal connection is kept); otherwise a JWT
   bearer sign-in proves Salesforce will let the server act as them (records are created as them);
   then the user and the sync mailbox are stored with access type app-only and the first run is
   spread over the interval, so 10,000 people do not start at once.

Every person gets one result (:data:`RESULTS`); running it twice changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from backend.clients import Clients
from backend.config import Settings
from backend.connectors.graph.directory import FoundMailbox
from backend.connectors.salesforce import JwtCredentials, SalesforceClient, SalesforceCredentials
from backend.connectors.salesforce.directory import DirectoryUser, users_by_email
from backend.errors import AuthRevoked, NotPreauthorized, ServiceMisconfigured, Unavailable
from backend.store import Store
from backend.store.mailboxes import SyncState
from backend.store.org_access import OrgAccess
from backend.store.users import User, user_id_for
from backend.sync.activation import activate
from backend.sync.collaborators import JWT_BEARER
from backend.sync.org_providers import OrgDirectory, OrgProvider

log = logging.getLogger(__name__)

RESULTS = ("activated", "already_active", "no_salesforce_user", "salesforce_user_inactive", "no_mailbox",
           "mailbox_mismatch", "not_allowed_by_tenant", "salesforce_not_authorized", "locked_by_admin",
           "ambiguous_salesforce_user", "mailbox_in_use", "try_again", "access_disconnected")
# What the connection of a mass-activated mailbox says about how it came to be.
VIA = "mass_activation"
MESSAGES = {
    "access_disconnected": "Your organisation's mailbox access was disconnected while this activation ran: "
                           "sync is off for this person. Connect it again, then activate.",
    "activated": "Sync is on; the first run is scheduled.",
    "already_active": "Sync was already on for this person; left as it was.",
    "no_salesforce_user": "No Salesforce user of your organisation has this email address.",
    "salesforce_user_inactive": "The Salesforce user with this email address is inactive.",
    "no_mailbox": "The mail provider has no mailbox for this address.",
    "mailbox_mismatch": "This address is not the primary address of the mailbox found for it (an alias, a former "
                        "address or a loose name match): activate the mailbox's primary address.",
    "not_allowed_by_tenant": "Your organisation's mail provider does not let Sidebar Sync read this mailbox.",
    "salesforce_not_authorized": "Salesforce has not pre-authorised this person for Sidebar Sync: add them "
                                 "to the connected app's permission set.",
    "locked_by_admin": "An administrator disabled sync for this person; Enable it first in People.",
    "ambiguous_salesforce_user": "Several active Salesforce users have this email address: give each their own.",
    "mailbox_in_use": "Another person of your organisation already syncs this mailbox; left as it was.",
    "try_again": "Salesforce could not sign this person in just now: activate them again later.",
}
# Console search hits looked at for a colleague syncing the same mailbox (one address matches few people).
_IN_USE_HITS = 50


@dataclass
class SliceContext:
    """What every slice of one activation shares: who asked, the provider and org access, where first runs go."""

    admin: User
    provider: OrgProvider
    access: OrgAccess
    started: float
    total: int
    # Built once per activation (one Salesforce session, one application token), closed by :meth:`close`.
    salesforce: SalesforceClient | None = None
    directory: OrgDirectory | None = None

    def open(self, settings: Settings, store: Store, clients: Clients) -> None:
        """Build the admin's Salesforce client and the provider's directory of the org's mailboxes."""
        self.salesforce = admin_client(settings, store, clients, self.admin)
        self.directory = self.provider.directory(settings, clients, store, self.access)

    def close(self) -> None:
        """Release both clients' connections."""
        for client in (self.salesforce, self.directory):
            if client is not None:
                client.close()


def result(address: str, code: str, uid: str = "", provider: OrgProvider | None = None) -> dict[str, Any]:
    """One person's result as the API returns it (the provider's wording where it has its own)."""
    message = (provider.messages.get(code) if provider is not None else None) or MESSAGES[code]
    return {"address": address, "result": code, "message": message, "user_id": uid}


def undo_if_disconnected(store: Store, ctx: SliceContext, org_id: str,
                         results: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """After a slice: when the org's access was disconnected meanwhile, the slice's people turned off again.

    Returns the slice's results rewritten (``access_disconnected``), or None while the access is the
    one the activation started with. ``disconnect_org`` forgets the access before it scans, so each
    person is turned off by it or by this check.
    """
    now = store.org_access.get(org_id)
    scope = ctx.provider.access_scope
    if ctx.provider.ready(now) and (scope is None or scope(now) == scope(ctx.access)):
        return None
    activated = [r["user_id"] for r in results if r["result"] == "activated" and r["user_id"]]
    deactivate_mass(store, org_id, activated)
    return [result(r["address"], "access_disconnected", r["user_id"]) if r["result"] == "activated" else r
            for r in results]


def admin_client(settings: Settings, store: Store, clients: Clients, admin: User) -> SalesforceClient:
    """A REST client over the administrator's own Salesforce login (the directory lookups count for the org)."""
    credentials = SalesforceCredentials(clients.salesforce_oauth, store.secrets, admin.id, admin.login_url,
                                        admin.instance_url)
    return SalesforceClient(settings, credentials)


def first_run_at(ctx: SliceContext, settings: Settings, index: int) -> float:
    """Person ``index`` of ``total``'s first run: spread evenly over one sync interval from the start."""
    return ctx.started + settings.SYNC_INTERVAL_SECONDS * index / max(1, ctx.total)


def activate_slice(store: Store, settings: Settings, clients: Clients, ctx: SliceContext, addresses: list[str],
                   first_index: int) -> list[dict[str, Any]]:
    """Decide and apply one slice of addresses; one result each, in order."""
    if ctx.salesforce is None or ctx.directory is None:
        ctx.open(settings, store, clients)
    assert ctx.salesforce is not None and ctx.directory is not None
    people = users_by_email(ctx.salesforce, addresses)
    wanted = [a for a in addresses if len(_active(people.get(a.lower(), []))) == 1]
    mailboxes = ctx.directory.find(wanted) if wanted else {}
    return [_one(store, settings, clients, ctx, address, people.get(address.lower(), []),
                 mailboxes.get(address.lower()), first_index + n)
            for n, address in enumerate(addresses)]


def _active(rows: Iterable[DirectoryUser]) -> list[DirectoryUser]:
    """The active users of an address, one per user id (SOQL gives them in no particular order)."""
    return list({r.user_id: r for r in rows if r.active}.values())


def _is_primary(found: FoundMailbox, address: str) -> bool:
    """True when ``address`` is the mailbox's primary address, not one of its aliases.

    An alias (a shared sales@ on Bob's mailbox, a former address) would give Bob's mail to whichever
    Salesforce user has that address as Email, so mass activation takes only the primary address.
    """
    return found.identity is not None and found.identity.primary.strip().lower() == address.strip().lower()


def _one(store: Store, settings: Settings, clients: Clients, ctx: SliceContext, address: str,
         rows: list[DirectoryUser], found: FoundMailbox | None, index: int) -> dict[str, Any]:
    active = _active(rows)
    if not active:
        return result(address, "salesforce_user_inactive" if rows else "no_salesforce_user", provider=ctx.provider)
    if len(active) > 1:
        # Picking one would log this mailbox as whoever came first (an integration user, a shared login).
        return result(address, "ambiguous_salesforce_user", provider=ctx.provider)
    person = active[0]
    org_id = ctx.admin.org_id
    uid = user_id_for(org_id, person.user_id)
    existing = store.users.get(uid)
    mailbox = store.mailboxes.get(uid) if existing is not None else None
    if mailbox is not None and mailbox.admin_hold:
        # Held off by an administrator (Disable): left alone, the others go on. Checked first because a
        # held mailbox may still be in a state that would read as "already on".
        return result(address, "locked_by_admin", uid, provider=ctx.provider)
    if mailbox is not None and mailbox.state in (SyncState.RUNNING, SyncState.PAUSED, SyncState.DISABLED_ERROR):
        return result(address, "already_active", uid, provider=ctx.provider)
    if found is not None and found.status == "forbidden":
        return result(address, "not_allowed_by_tenant", provider=ctx.provider)
    if found is None or found.status == "missing" or found.identity is None:
        return result(address, "no_mailbox", provider=ctx.provider)
    if found.status == "mismatch" or not _is_primary(found, address):
        return result(address, "mailbox_mismatch", provider=ctx.provider)
    if _synced_by_other(store, org_id, uid, found.identity.primary):
        return result(address, "mailbox_in_use", provider=ctx.provider)
    user = existing or User(id=uid, org_id=org_id, sf_user_id=person.user_id)
    user.username, user.email, user.display_name = person.username, person.email, person.name
    user.login_url, user.instance_url = ctx.admin.login_url, ctx.admin.instance_url
    user.environment = ctx.admin.environment
    user.salesforce_access = JWT_BEARER
    if existing is None:
        user.salesforce_status = "connected"
    try:
        _prove_salesforce(store, clients, user)
    except NotPreauthorized:
        return result(address, "salesforce_not_authorized", provider=ctx.provider)
    except AuthRevoked:
        # Salesforce will not sign them in (inactive meanwhile, frozen): as good as inactive.
        return result(address, "salesforce_user_inactive", provider=ctx.provider)
    except ServiceMisconfigured:
        raise  # the server's key or connected app: everyone would fail alike, so the job stops
    except Unavailable:
        # One sign-in's 5xx or timeout: this person only; the job goes on with the others.
        return result(address, "try_again", provider=ctx.provider)
    store.users.save(user)
    connection = {**ctx.provider.connection(ctx.access, found), "via": VIA, "activated_by": ctx.admin.id}
    activate(store, user, ctx.provider.name, found.identity, connection, {})
    store.schedule.set_next(uid, first_run_at(ctx, settings, index))
    log.info("mass activation: sync on uid=%s provider=%s by=%s", uid, ctx.provider.name, ctx.admin.id)
    return result(address, "activated", uid, provider=ctx.provider)


def _synced_by_other(store: Store, org_id: str, uid: str, primary: str) -> bool:
    """True when another person of the org already has sync on for the mailbox ``primary`` (one index search)."""
    page = store.directory.search(org_id, primary, "mailbox", False, "", "", 0, _IN_USE_HITS)
    for other in page.uids:
        if other == uid:
            continue
        mailbox = store.mailboxes.get(other)
        if mailbox is not None and mailbox.activated and primary.lower() in \
                {mailbox.address.lower(), *(a.lower() for a in mailbox.aliases)}:
            return True
    return False


def _prove_salesforce(store: Store, clients: Clients, user: User) -> None:
    """One JWT bearer sign-in (kept for the first run) unless the person has their own login."""
    own = store.secrets.get(SalesforceCredentials.SECRET_KIND, user.id, SalesforceCredentials.REFRESH)
    if own:
        return
    if clients.salesforce_jwt is None:
        raise NotPreauthorized("SALESFORCE_JWT_PRIVATE_KEY is not set.")
    JwtCredentials(clients.salesforce_jwt, store.secrets, user.id, user.username, user.login_url,
                   user.instance_url).refresh()


def deactivate_mass(store: Store, org_id: str, uids: Iterable[str]) -> dict[str, str]:
    """Turn sync off for mass-activated people of ``org_id``; per uid ``deactivated`` or why it was left alone."""
    outcome: dict[str, str] = {}
    for uid in uids:
        mailbox = store.mailboxes.get(uid) if len(uid) <= 64 else None
        if mailbox is None or mailbox.org_id != org_id:
            outcome[uid] = "not_found"
        elif mailbox.connection.get("via") != VIA or not mailbox.activated:
            outcome[uid] = "not_mass_activated"
        else:
            store.mailboxes.deactivate(uid)
            store.schedule.remove(uid)
            outcome[uid] = "deactivated"
    return outcome
