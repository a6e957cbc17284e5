"""The OpenAPI description of ``/api/admin`` (added to :data:`backend.api.openapi.PATHS`)."""

from __future__ import annotations

from typing import Any

from backend.api.openapi import COMPONENTS, PATHS, _body, _err, _json
from backend.sync.policy import POLICY_NAMES, UNLOCKABLE

_CALLER = ("Accepts the console's session cookie (state-changing calls also need the session's "
           "X-CSRF-Token header) or an administrator's pane bearer token. Errors: 401 unauthorized, "
           "401 salesforce_revoked, 403 not_admin, 403 csrf_failed, 404 not_found (a user of another org).")
_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"console": []}]
_STATES = ["not_activated", "running", "paused", "disabled_error", "deactivated"]
_USER = {"$ref": "#/components/schemas/AdminUser"}
_POLICY = {"$ref": "#/components/schemas/OrgPolicy"}
_ACTIONS = ["enable", "disable", "pause", "resume", "sync", "reset"]


def _op(summary: str, ok: dict[str, Any], *errors: int, status: str = "200", **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "description": _CALLER, "security": _SECURITY,
            "responses": {status: ok, **_err(401, 403, *errors)}, **extra}


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_UID = {"name": "uid", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}

PATHS.update({
    "/api/admin/session": {"get": {
        "summary": "Who is signed in to the console, whether they are an admin, and the CSRF token",
        "security": _SECURITY, "responses": {"200": _json({"type": "object", "properties": {
            "user": {"type": "object"}, "is_admin": {"type": "boolean"}, "csrf": {"type": ["string", "null"]}}}),
            **_err(401, 503)}}},
    "/api/admin/summary": {"get": _op("The org at a glance: mailboxes by state, runs and failures in 24 h, API use",
                                      _json({"type": "object"}), 503)},
    "/api/admin/users": {"get": _op(
        "The org's users: filter, search, sort, pages",
        _json({"type": "object", "properties": {
            "total": {"type": "integer"}, "page": {"type": "integer"}, "per_page": {"type": "integer"},
            "pages": {"type": "integer"}, "truncated": {"type": "boolean"},
            "users": {"type": "array", "items": _USER}}}), 400,
        parameters=[
            _query("state", {"type": "string", "enum": _STATES}),
            _query("provider", {"type": "string", "enum": ["exchange", "microsoft", "google", "none"]}),
            _query("q", {"type": "string", "maxLength": 200}, "part of a name, username or address"),
            _query("sort", {"type": "string", "enum": ["name", "username", "mailbox", "state", "provider",
                                                       "last_run", "last_seen"]}),
            _query("order", {"type": "string", "enum": ["asc", "desc"]}),
            _query("page", {"type": "integer", "minimum": 1}),
            _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200}),
        ])},
    "/api/admin/users/{uid}": {"get": _op("One user: the row, the last 20 runs, quarantined items with reasons",
                                          _json(_USER), 404, parameters=[_UID])},
    "/api/admin/users/{uid}/{action}": {"post": _op(
        "Enable, disable, pause, resume, sync now (once a minute per mailbox) or reset (cursors dropped)",
        _json(_USER, "Done; a run was queued"), 404, 409, 429, status="202",
        parameters=[_UID, {"name": "action", "in": "path", "required": True,
                           "schema": {"type": "string", "enum": _ACTIONS}}])},
    "/api/admin/users/bulk": {"post": _op(
        "The same action on a selection (at most 500); the outcome per user", _json({"type": "object", "properties": {
            "action": {"type": "string"}, "done": {"type": "integer"},
            "results": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "status": {"type": "string", "enum": ["ok", "invalid_state", "rate_limited"]},
                "state": {"type": ["string", "null"]}, "message": {"type": "string"}}}}}}), 400, 404, 413, 415,
        requestBody=_body({"type": "object", "required": ["action", "ids"], "properties": {
            "action": {"type": "string", "enum": _ACTIONS},
            "ids": {"type": "array", "minItems": 1, "maxItems": 500, "items": {"type": "string"}}}}))},
    "/api/admin/settings": {
        "get": _op("The org policy, with locked per value", _json(_POLICY)),
        "put": _op("Change the org policy: values and locks", _json(_POLICY), 400, 413, 415,
                   requestBody=_body({"type": "object", "description": "{name: {value, locked}} or {name: value}",
                                      "additionalProperties": {}})),
    },
    "/api/admin/audit": {"get": _op("The org's audit log: the last 200 administrator actions", _json({
        "type": "object", "properties": {"entries": {"type": "array", "items": {"type": "object", "properties": {
            "at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"},
            "actor_name": {"type": "string"}, "action": {"type": "string"},
            "targets": {"type": "array", "items": {"type": "string"}}, "detail": {"type": "object"}}}}}}))},
})

_VALUE = {"type": "object", "properties": {"value": {}, "locked": {"type": "boolean"}}}
COMPONENTS["securitySchemes"]["console"] = {"type": "apiKey", "in": "cookie", "name": "__Host-sidebar-console"}
COMPONENTS["schemas"]["OrgPolicy"] = {"type": "object", "properties": {name: _VALUE for name in POLICY_NAMES}}
for _rule in UNLOCKABLE:  # booleans without a lock: what a person may do with a mass-activated mailbox
    COMPONENTS["schemas"]["OrgPolicy"]["properties"][_rule] = {"type": "object", "properties": {
        "value": {"type": "boolean"}, "locked": {"type": "boolean", "enum": [False]}}}
COMPONENTS["schemas"]["AdminUser"] = {"type": "object", "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, "username": {"type": "string"},
    "email": {"type": "string"}, "mailbox": {"type": ["string", "null"]}, "provider": {"type": ["string", "null"]},
    "access_type": {"type": ["string", "null"],
                    "enum": ["delegated", "app_only", "impersonation", "domain_wide", "password", None]},
    "state": {"type": "string", "enum": _STATES}, "error": {"type": ["object", "null"]},
    "last_run": {"type": ["object", "null"]}, "last_success_at": {"type": ["string", "null"]},
    "issues": {"type": "integer"}, "last_seen_at": {"type": ["string", "null"]},
    "instant_sync": {"type": ["object", "null"]},
}}
