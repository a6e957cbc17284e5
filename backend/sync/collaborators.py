"""The two connectors a run talks to, built from the injected clients (or the factories a test gives)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from backend.clients import Clients
from backend.config import Settings
from backend.connectors import MailboxContext, MailboxSecrets, open_mailbox
from backend.connectors.crm import ApiUsage, Crm
from backend.connectors.mailbox import Mailbox
from backend.connectors.salesforce import JwtCredentials, SalesforceCredentials, open_crm
from backend.store import Store
from backend.store.mailboxes import SyncMailbox
from backend.store.users import User
from backend.sync.org_providers import ORG_PROVIDERS

# User.salesforce_access of a mass-activated person.
JWT_BEARER = "jwt_bearer"


def crm_for(settings: Settings, store: Store, clients: Clients, user: User,
            on_usage: Callable[[ApiUsage], None]) -> Crm:
    """The CRM connector for a user's run (Salesforce, or ``clients.crm_factory`` when one is given)."""
    if clients.crm_factory is not None:
        crm: Crm = clients.crm_factory(user, on_usage)
        return crm
    credentials = credentials_for_run(store, clients, user)
    return open_crm(settings, credentials, user.org_id, user.sf_user_id, caps_cache=store.capabilities,
                    on_usage=on_usage)


def credentials_for_run(store: Store, clients: Clients, user: User) -> SalesforceCredentials:
    """The person's own login when they made one, else the JWT bearer flow for a mass-activated person."""
    own = store.secrets.get(SalesforceCredentials.SECRET_KIND, user.id, SalesforceCredentials.REFRESH)
    if user.salesforce_access == JWT_BEARER and not own and clients.salesforce_jwt is not None:
        return JwtCredentials(clients.salesforce_jwt, store.secrets, user.id, user.username, user.login_url,
                              user.instance_url)
    return SalesforceCredentials(clients.salesforce_oauth, store.secrets, user.id, user.login_url, user.instance_url)


def current_connection(store: Store, mailbox: SyncMailbox) -> dict[str, Any]:
    """The mailbox's connection, with the org's current access over it when the mailbox is read with that.

    The org secret (the Exchange service account's password) is always the current one, so login, EWS
    URL and version must be too: the ones stored at activation would pair the old login with the new
    password once the admin saves another account.
    """
    connection = dict(mailbox.connection)
    provider = ORG_PROVIDERS.get(mailbox.provider)
    if provider is not None and provider.current is not None and provider.uses(mailbox):
        access = store.org_access.get(mailbox.org_id)
        if provider.ready(access):
            connection.update(provider.current(access))
    return connection


def context_for(settings: Settings, store: Store, clients: Clients, mailbox: SyncMailbox) -> MailboxContext:
    """What a mailbox connector (a run's, or push subscriptions') is built from."""
    return MailboxContext(
        settings=settings,
        mailbox_id=mailbox.id,
        address=mailbox.address,
        connection=current_connection(store, mailbox),
        # Write-backs (a refreshed token cache) are refused once the mailbox is deactivated or
        # reconnected while the run goes: Deactivate must not be undone by a run.
        secrets=MailboxSecrets(store.secrets, mailbox.id, guard=store.mailboxes, generation=mailbox.activated_at),
        resolver=clients.dns_resolver,
        org_secret=lambda name: store.org_access.get_secret(mailbox.org_id, name),
    )


def mailbox_for(settings: Settings, store: Store, clients: Clients, mailbox: SyncMailbox) -> Mailbox:
    """The mailbox connector, built through the provider map (or ``clients.mailbox_factory`` when one is given)."""
    context = context_for(settings, store, clients, mailbox)
    if clients.mailbox_factory is not None:
        connector: Mailbox = clients.mailbox_factory(mailbox.provider, context)
        return connector
    return open_mailbox(mailbox.provider, context)
