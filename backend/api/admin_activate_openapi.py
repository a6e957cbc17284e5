"""The OpenAPI description of mass activation and the org's mailbox access (added to ``PATHS``)."""

from __future__ import annotations

from typing import Any

from backend.api.admin_openapi import _CALLER, _SECURITY
from backend.api.openapi import PATHS, _body, _err, _json
from backend.sync.mass import RESULTS


def _op(summary: str, ok: dict[str, Any], *errors: int, status: str = "200", **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "description": _CALLER, "security": _SECURITY,
            "responses": {status: ok, **_err(401, 403, *errors)}, **extra}


_AID = {"name": "aid", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^act[0-9a-f]{20}$"}}
_CONNECTION = {"type": "object", "properties": {
    "provider": {"type": "string"}, "connected": {"type": "boolean"}, "tenant_id": {"type": ["string", "null"]},
    "connected_at": {"type": ["string", "null"]},
    "state": {"type": "string", "enum": ["not_connected", "ok", "broken"]},
    "error": {"type": ["object", "null"]}}}
_DISCONNECTED = _json({"type": "object", "properties": {
    "provider": {"type": "string"}, "connected": {"type": "boolean"}, "was_connected": {"type": "boolean"},
    "deactivated": {"type": "integer"}}}, "Disconnected (also when it was not connected)")


def disconnect_op(label: str) -> dict[str, Any]:
    """The DELETE of one org connection (``/api/admin/connections/{provider}``)."""
    return _op(f"Disconnect the org's {label} access: sync turned off for everyone read with it, its secrets "
               "forgotten", _DISCONNECTED)


_RESULT = {"type": "object", "properties": {
    "address": {"type": "string"}, "result": {"type": "string", "enum": list(RESULTS)},
    "message": {"type": "string"}, "user_id": {"type": "string"}}}

PATHS.update({
    "/api/admin/activate": {"post": _op(
        "Mass activation: turn sync on for many people (JSON, a text/csv body, or a multipart file upload)",
        _json({"type": "object", "properties": {"job_id": {"type": "string"}}}, "Queued"),
        400, 409, 413, 415, status="202",
        requestBody={"required": True, "content": {
            "application/json": {"schema": {"type": "object", "required": ["provider", "users"], "properties": {
                "provider": {"type": "string", "enum": ["microsoft", "exchange", "google"]},
                "users": {"oneOf": [{"type": "array", "maxItems": 10000, "items": {"type": "string",
                                                                                   "format": "email"}},
                                    {"type": "string", "enum": ["all"]}]}}}},
            "text/csv": {"schema": {"type": "string", "description": "one address a line, or a header email"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}, "provider": {"type": "string"}}}}}})},
    "/api/admin/activations/{aid}": {"get": _op(
        "A mass activation's progress (n of N) and per-person results", _json({"type": "object", "properties": {
            "id": {"type": "string"}, "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
            "done": {"type": "integer"}, "total": {"type": "integer"},
            "results": {"type": "array", "items": _RESULT}}}), 404, parameters=[_AID])},
    "/api/admin/activations/{aid}/results.csv": {"get": _op(
        "The results as CSV (address, result, message)",
        {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}}, 404, parameters=[_AID])},
    "/api/admin/deactivate": {"post": _op(
        "Turn sync off for mass-activated people", _json({"type": "object", "properties": {
            "done": {"type": "integer"}, "results": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "status": {"type": "string", "enum": [
                    "deactivated", "not_mass_activated", "not_found"]}}}}}}), 400, 413, 415,
        requestBody=_body({"type": "object", "required": ["ids"], "properties": {
            "ids": {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"type": "string"}}}}))},
    "/api/admin/connections": {"get": _op(
        "The providers mass activation supports and whether the org's access to each is set up",
        _json({"type": "object", "properties": {"providers": {"type": "array", "items": {
            "type": "object", "properties": {
                "provider": {"type": "string"}, "label": {"type": "string"}, "ready": {"type": "boolean"},
                "state": {"type": "string", "enum": ["not_connected", "ok", "broken"]},
                "missing": {"type": ["string", "null"]}}}}}}))},
    "/api/admin/connections/microsoft": {"get": _op(
        "The org's Microsoft 365 app-only access: consented tenant and state (never a secret)", _json(_CONNECTION)),
        "delete": disconnect_op("Microsoft 365")},
    "/api/admin/connections/microsoft/consent": {"post": _op(
        "The admin-consent URL for a tenant administrator, bound to this org",
        _json({"type": "object", "properties": {"url": {"type": "string"}}}))},
    "/api/admin/connections/microsoft/check": {"post": _op(
        "Check the org's access now; when it works again everyone it stopped resumes", _json(_CONNECTION), 409)},
})

