"""The Salesforce connector: OAuth login and credentials, and the CRM over the REST API (a package)."""

from backend.connectors.salesforce.credentials import SalesforceCredentials
from backend.connectors.salesforce.hosts import (
    LoginHostRefused,
    check_salesforce_url,
    environment_of,
    is_salesforce_host,
    login_url_for,
)
from backend.connectors.salesforce.oauth import Identity, SalesforceOAuth, TokenExpired, TokenSet, pkce_pair
from backend.connectors.salesforce.writes import (
    COLLECTION_MAX,
    COMPOSITE_MAX_HEAVY,
    EMAIL_LOOKUP_PREFIX,
    URI_MAX_CHARS,
    CapabilityCache,
    SalesforceCrm,
    activity_key,
    address_variants,
    chunk_in_list,
    open_crm,
    safe_reason,
    soql_quote,
)

__all__ = [
    "COLLECTION_MAX",
    "COMPOSITE_MAX_HEAVY",
    "EMAIL_LOOKUP_PREFIX",
    "URI_MAX_CHARS",
    "CapabilityCache",
    "Identity",
    "LoginHostRefused",
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
    "is_salesforce_host",
    "login_url_for",
    "open_crm",
    "pkce_pair",
    "safe_reason",
    "soql_quote",
]
