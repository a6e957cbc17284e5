"""The Salesforce connector: OAuth login and credentials, and the CRM over the REST API.

One module a concern, each layer using only those below it::

    hosts        which hosts may receive a login or a token (Production, Sandbox, My Domain)
    oauth        the OAuth endpoints: web-server flow with PKCE, refresh, revoke, userinfo
    credentials  a user's tokens from the secret store, refreshed once when refused
    soql         SOQL literals, IN lists cut to the statement and URI limits
    client       the REST client of one run: refresh-once, API usage, vendor errors -> domain errors
    capabilities what an org supports (Enhanced Email, our key field), cached per org
    batches      collections and Composite requests: how records travel with their relations
    records      drafts packed into sObject records, fields cut to their (UTF-16) lengths
    jwt_bearer   the JWT bearer flow: mass-activated people signed in with the server's key, no refresh token
    lookup       people by address, existing emails and meetings by key, cached per run
    writes       a write plan sent, each record's outcome counted (written, rejected, transient)
    permissions  who administers Sidebar Sync in the org (permission sets)
    connector    SalesforceCrm (the Crm protocol for one run) and open_crm

Nothing outside this package imports simple-salesforce: the names below are its public surface.
"""

from backend.connectors.common import pkce_pair
from backend.connectors.salesforce.batches import COLLECTION_MAX, COMPOSITE_MAX_HEAVY
from backend.connectors.salesforce.capabilities import CapabilityCache
from backend.connectors.salesforce.client import SalesforceClient
from backend.connectors.salesforce.connector import SalesforceCrm, open_crm
from backend.connectors.salesforce.credentials import ACCESS_TOKEN_CACHE_SECONDS, SalesforceCredentials
from backend.connectors.salesforce.hosts import (
    SALESFORCE_DOMAINS,
    LoginHostRefused,
    check_salesforce_url,
    environment_of,
    is_salesforce_host,
    login_url_for,
)
from backend.connectors.salesforce.jwt_bearer import JwtBearer, JwtCredentials
from backend.connectors.salesforce.lookup import EMAIL_LOOKUP_PREFIX, address_variants
from backend.connectors.salesforce.oauth import Identity, SalesforceOAuth, TokenExpired, TokenSet
from backend.connectors.salesforce.permissions import ADMIN_PERMISSION_SET, grants_admin
from backend.connectors.salesforce.records import CANCELLED_PREFIX, FIELD_LIMITS, KEY_FIELD_MAX, activity_key
from backend.connectors.salesforce.soql import SOQL_MAX_CHARS, URI_MAX_CHARS, chunk_in_list, soql_quote
from backend.connectors.salesforce.writes import safe_reason

__all__ = [
    "ACCESS_TOKEN_CACHE_SECONDS",
    "ADMIN_PERMISSION_SET",
    "CANCELLED_PREFIX",
    "COLLECTION_MAX",
    "COMPOSITE_MAX_HEAVY",
    "EMAIL_LOOKUP_PREFIX",
    "FIELD_LIMITS",
    "KEY_FIELD_MAX",
    "SALESFORCE_DOMAINS",
    "SOQL_MAX_CHARS",
    "URI_MAX_CHARS",
    "CapabilityCache",
    "Identity",
    "JwtBearer",
    "JwtCredentials",
    "LoginHostRefused",
    "SalesforceClient",
    "SalesforceCredentials",
    "SalesforceCrm",
    "SalesforceOAuth",
    "TokenExpired",
    "TokenSet",
    "activity_key",
    "address_variants",
    "check_salesforce_url",
    "chunk_in_list",
    "environment_of",
    "grants_admin",
    "is_salesforce_host",
    "login_url_for",
    "open_crm",
    "pkce_pair",
    "safe_reason",
    "soql_quote",
]
