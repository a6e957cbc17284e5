"""The OpenAPI description of the org's Google Workspace service account (added to ``PATHS``)."""

from __future__ import annotations

from backend.api.admin_activate_openapi import _op, disconnect_op
from backend.api.openapi import PATHS, _body, _json

_NULLABLE = {"type": ["string", "null"]}
_VIEW = {"type": "object", "properties": {
    "provider": {"type": "string", "enum": ["google"]}, "connected": {"type": "boolean"},
    "client_email": _NULLABLE, "client_id": _NULLABLE, "domain": _NULLABLE,
    "domains": {"type": "array", "items": {"type": "string"}}, "address": _NULLABLE,
    "key_saved": {"type": "boolean"}, "connected_at": _NULLABLE,
    "state": {"type": "string", "enum": ["not_connected", "ok", "broken"]}, "error": {"type": ["object", "null"]},
    "scopes": {"type": "array", "items": {"type": "string"},
               "description": "what the Workspace admin authorises for client_id (Domain-wide delegation)"}}}
_CHECKED = {"allOf": [_VIEW, {"type": "object", "properties": {
    "check": {"type": "string", "enum": ["ok", "refused"]}, "check_code": _NULLABLE,
    "check_message": _NULLABLE, "resumed": {"type": "integer"}}}]}

PATHS.update({
    "/api/admin/connections/google": {
        "delete": disconnect_op("Google Workspace"),
        "get": _op("The org's Google Workspace service account and what to authorise (never its key)", _json(_VIEW)),
        "put": _op("Save the service account's JSON key (write-only) and the Workspace domain after a delegated "
                   "token for one address (default: the admin's) reads its mailbox", _json(_VIEW),
                   400, 413, 415, 422, 502,
                   requestBody=_body({"type": "object", "required": ["domain"], "properties": {
                       "key": {"type": "string", "writeOnly": True, "description": "the JSON key file's text"},
                       "service_account": {"type": "object", "writeOnly": True,
                                           "description": "the JSON key, parsed (instead of key)"},
                       "domain": {"type": "string", "description": "the Workspace domain (several: comma-separated)"},
                       "address": {"type": "string", "format": "email"}}}))},
    "/api/admin/connections/google/check": {"post": _op(
        "Test: a delegated token reads one mailbox; when it works again everyone resumes",
        _json(_CHECKED), 400, 409, 413, 415, 502,
        requestBody=_body({"type": "object", "required": ["address"], "properties": {
            "address": {"type": "string", "format": "email"}}}))},
})
