"""Who administers Sidebar Sync in an org: the person's permission sets, read with their own token."""

from __future__ import annotations

from backend.connectors.salesforce.client import SalesforceClient
from backend.connectors.salesforce.soql import soql_quote

# A permission set an org assigns to name admins without giving them Modify All Data.
ADMIN_PERMISSION_SET = "Sidebar_Sync_Admin"
# The profile is a permission set too (IsOwnedByProfile = true), so this one query covers both.
QUERY = ("SELECT PermissionSet.Name, PermissionSet.PermissionsModifyAllData FROM PermissionSetAssignment "
         "WHERE AssigneeId = ")


def grants_admin(client: SalesforceClient, sf_user_id: str) -> bool:
    """True when the user's permission sets (their profile's included) grant Modify All Data or are ours."""
    soql = QUERY + soql_quote(sf_user_id)
    body = client.call(lambda sf: sf.query(soql))
    for record in client.all_records(body or {}):
        permission_set = record.get("PermissionSet") or {}
        if permission_set.get("PermissionsModifyAllData") is True:
            return True
        if str(permission_set.get("Name") or "") == ADMIN_PERMISSION_SET:
            return True
    return False
