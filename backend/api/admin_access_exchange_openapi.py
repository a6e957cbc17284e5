"""The OpenAPI description of the org's on-premises Exchange service account (added to ``PATHS``)."""

from __future__ import annotations

from backend.api.admin_activate_openapi import _op, disconnect_op
from backend.api.openapi import PATHS, _body, _json

_VIEW = {"type": "object", "properties": {
    "provider": {"type": "string", "enum": ["exchange"]}, "connected": {"type": "boolean"},
    "login": {"type": ["string", "null"]}, "ews_url": {"type": ["string", "null"]},
    "autodiscovered": {"type": "boolean"}, "password_saved": {"type": "boolean"},
    "connected_at": {"type": ["string", "null"]},
    "state": {"type": "string", "enum": ["not_connected", "ok", "broken"]}, "error": {"type": ["object", "null"]}}}
_CHECKED = {"allOf": [_VIEW, {"type": "object", "properties": {
    "check": {"type": "string", "enum": ["ok", "refused"]}, "check_code": {"type": ["string", "null"]},
    "check_message": {"type": ["string", "null"]}, "resumed": {"type": "integer"}}}]}

PATHS.update({
    "/api/admin/connections/exchange": {
        "delete": disconnect_op("on-premises Exchange"),
        "get": _op("The org's Exchange service account (never its password)", _json(_VIEW)),
        "put": _op("Save the service account (ApplicationImpersonation) after proving its login; the password is "
                   "write-only", _json(_VIEW), 400, 401, 413, 415, 502,
                   requestBody=_body({"type": "object", "required": ["login", "password"], "properties": {
                       "login": {"type": "string"}, "password": {"type": "string", "writeOnly": True},
                       "ews_url": {"type": "string", "description": "empty: Autodiscover"},
                       "address": {"type": "string", "format": "email"}}}))},
    "/api/admin/connections/exchange/check": {"post": _op(
        "Test: the service account may impersonate one mailbox; when it works again everyone resumes",
        _json(_CHECKED), 400, 409, requestBody=_body({"type": "object", "required": ["address"], "properties": {
            "address": {"type": "string", "format": "email"}}}))},
})
