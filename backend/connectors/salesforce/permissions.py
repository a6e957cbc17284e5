"""Who administers Sidebar Sync in an org: the person's permission sets, read with their own token."""

from __future__ import annotations

from backend.connectors.salesforce.client import SalesforceClient
from backend.connectors.salesforce.soql import soql_quote

# A permission set an org assigns to name admins without giving them Modify All Data.
ADMIN_PERMISSION_SET = "Sidebar_Sync_Admin"


def grants_admin(client: SalesforceClient, sf_user_id: str) -> bool:
    """True when the user's permission sets (their profile's included) grant Modify All Data or are ours."""
    soql = ("SELECT PermissionSet.Name, PermissionSet.PermissionsModifyAllData FROM PermissionSetAssignment "
            f"WHERE AssigneeId = {soql_quote(sf_user_id)}")  # noqa: S608 - a quoted SOQL literal
    body = client.call(lambda sf: sf.query(soql))
    for record in client.all_records(body or {}):
        permission_set = record.get("PermissionSet") or {}
        if permission_set.get("PermissionsModifyAllData") is True:
            return True
        if str(permission_set.get("Name") or "") == ADMIN_PERMISSION_SET:
            return True
    return False
