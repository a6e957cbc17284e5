"""The OpenAPI description of ``/api``, served at ``GET /api/openapi.json``.

Kept next to the routes and checked by a test that every API route is described here.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from backend.api.blueprint import bp

_ERROR = {"$ref": "#/components/schemas/Error"}


def _err(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "Error", "content": {"application/json": {"schema": _ERROR}}} for s in statuses}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_SYNC = {"$ref": "#/components/schemas/Sync"}

# Operations, by path and method. Modules that add routes extend this mapping.
PATHS: dict[str, dict[str, Any]] = {
    "/api/config": {"get": {"summary": "Public client configuration", "security": [],
                            "responses": {"200": _json({"type": "object"})}}},
    "/api/session": {
        "post": {
            "summary": "Trade a one-time sign-in code for a bearer token",
            "security": [],
            "requestBody": _body({
                "type": "object", "required": ["code", "mailbox"],
                "properties": {"code": {"type": "string"}, "mailbox": {"type": "string", "format": "email"},
                               "mailbox_proof": {"type": "string"}},
            }),
            "responses": {"201": _json({"type": "object", "properties": {
                "token": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}}}),
                **_err(400, 401, 413, 415, 503)},
        },
        "delete": {"summary": "Log out this task pane",
                   "responses": {"204": {"description": "Logged out"}, **_err(401)}},
    },
    "/api/sessions": {
        "delete": {"summary": "Log out everywhere: end every task pane session of this user",
                   "responses": {"204": {"description": "Every session ended"}, **_err(401)}},
    },
    "/api/dialog": {"post": {
        "summary": "Start URL of a sign-in dialog with a single-use ticket",
        "requestBody": _body({"type": "object", "required": ["provider"], "properties": {
            "provider": {"type": "string", "enum": ["salesforce", "microsoft", "google"]},
            # Salesforce only (switch account): the environment; by default the current account's.
            "env": {"type": "string", "enum": ["production", "sandbox", "mydomain"]},
            "domain": {"type": "string", "maxLength": 253}}}),
        "responses": {"200": _json({"type": "object", "properties": {"url": {"type": "string"}}}),
                      **_err(400, 401, 409)},
    }},
    "/api/me": {"get": {"summary": "The user, the add-in mailbox and the Salesforce account",
                        "responses": {"200": _json({"type": "object"}), **_err(401)}}},
    "/api/sync": {"get": {"summary": "Sync state", "responses": {"200": _json(_SYNC), **_err(401)}}},
    "/api/sync/settings": {"put": {
        "summary": "What to sync and the personal blocklist",
        "requestBody": _body({"type": "object", "properties": {
            "sync_emails": {"type": "boolean"}, "sync_events": {"type": "boolean"},
            "cancelled_events": {"type": "string", "enum": ["mark", "delete"]},
            "blocklist": {"type": "array", "items": {"type": "string"}}}}),
        "responses": {"200": _json(_SYNC), **_err(400, 401)},
    }},
    "/api/sync/pause": {"post": {"summary": "Pause sync",
                                 "description": "403 locked_by_policy for a mass-activated mailbox when the org "
                                                "policy's mass_activated_may_pause is false.",
                                 "responses": {"200": _json(_SYNC), **_err(401, 403, 409)}}},
    "/api/sync/resume": {"post": {"summary": "Resume sync",
                                  "description": "403 locked_by_admin while an administrator has disabled the mailbox "
                                                 "(only the administrator's Enable undoes it).",
                                  "responses": {"200": _json(_SYNC), **_err(401, 403, 409)}}},
    "/api/sync/deactivate": {"post": {"summary": "Deactivate sync",
                                      "description": "403 locked_by_policy for a mass-activated mailbox unless the "
                                                     "org policy's mass_activated_may_deactivate is true (it is "
                                                     "false by default).",
                                      "responses": {"200": _json(_SYNC), **_err(401, 403, 409)}}},
    "/api/sync/run": {"post": {"summary": "Sync now", "responses": {"202": _json(_SYNC), **_err(401, 409)}}},
    "/api/sync/exchange": {"post": {
        "summary": "Connect on-premises Exchange (EWS) with a login and password, and activate sync",
        "description": "Without ews_url the EWS endpoint is found by Autodiscover. Error codes: invalid_input, "
                       "rate_limited, auth_failed, ews_unreachable, host_not_allowed, not_ews, tls_error, "
                       "timeout, ews_error, mailbox_not_found, mailbox_unknown, login_not_allowed (an email login "
                       "outside "
                       "the add-in mailbox's domain), ews_host_unconfirmed (Autodiscover named a host outside "
                       "the login's domain: confirm it by sending it as ews_url), locked_by_admin (403: an "
                       "administrator disabled this mailbox; only their Enable undoes it). A mailbox that is not "
                       "the add-in's answers auth_failed.",
        "requestBody": _body({"type": "object", "required": ["login", "password"], "properties": {
            "login": {"type": "string", "maxLength": 256, "description": "email address or DOMAIN\\user"},
            "password": {"type": "string", "maxLength": 256, "writeOnly": True},
            "ews_url": {"type": "string", "format": "uri", "maxLength": 2048,
                        "description": "https://host/EWS/Exchange.asmx (optional)"}}}),
        "responses": {"200": _json(_SYNC), **_err(400, 401, 403, 413, 415, 422, 429, 502, 504)},
    }},
    "/api/openapi.json": {"get": {"summary": "This document", "security": [],
                                  "responses": {"200": _json({"type": "object"})}}},
}

_ITEM = {"$ref": "#/components/schemas/ItemStatus"}
_ITEM_QUERY = [
    {"name": "message_id", "in": "query", "schema": {"type": "string", "maxLength": 998},
     "description": "An email's Internet Message-ID (Outlook's internetMessageId)"},
    {"name": "event_uid", "in": "query", "schema": {"type": "string", "maxLength": 998},
     "description": "A meeting's iCalendar UID; one occurrence of a series: UID@start (UTC, yyyymmddThhmmssZ)"},
    {"name": "date", "in": "query", "schema": {"type": "string", "format": "date-time"},
     "description": "When the item was received or starts (tells \"older than the first sync\" apart)"},
]
# The item in front of the person (backend/api/items.py).
PATHS.update({
    "/api/items/status": {"get": {
        "summary": "What sync did with one email or meeting of the person's own sync mailbox",
        "description": "From the per-item trail (keyed hash of the identifier: codes, Salesforce ids, times, 30 "
                       "days), else a live look-up in Salesforce. status: logged | not_yet | not_logged; reason: "
                       "a filter reason (free_mail, internal, blocked, blocked_org, private, no_match, too_old, "
                       "...), refused, paused or sync_off.",
        "parameters": _ITEM_QUERY,
        "responses": {"200": _json(_ITEM), **_err(400, 401, 429)}}},
    "/api/items/log": {"post": {
        "summary": "Log it now: read this one item from the mailbox and log it through the sync engine",
        "description": "Works while sync is paused; private items and the org's blocklist are never logged.",
        "requestBody": _body({"type": "object", "required": ["item_id"], "properties": {
            "message_id": {"type": "string"}, "event_uid": {"type": "string"},
            "item_id": {"type": "string", "maxLength": 2048,
                        "description": "Outlook's item id (EWS id; REST id for Microsoft 365)"}}}),
        "responses": {"200": _json(_ITEM), **_err(400, 401, 404, 409, 429, 502)}}},
    "/api/items/block": {"post": {
        "summary": "Never log this sender or domain: add it to the person's blocklist",
        "requestBody": _body({"type": "object", "required": ["entry"], "properties": {
            "entry": {"type": "string", "maxLength": 254, "description": "an address or a domain"}}}),
        "responses": {"200": _json({"type": "object", "properties": {
            "added": {"type": "array", "items": {"type": "string"}}, "sync": _SYNC}}), **_err(400, 401, 403)}}},
})

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "schemas": {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
        "Sync": {"type": "object", "properties": {
            "state": {"type": "string",
                      "enum": ["not_activated", "running", "paused", "disabled_error", "deactivated"]},
            "provider": {"type": ["string", "null"]},
            "mailbox": {"type": ["string", "null"]},
            "last_run": {"type": ["object", "null"]},
            "next_run": {"type": ["string", "null"], "format": "date-time"},
            "error": {"type": ["object", "null"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "since": {"type": ["string", "null"], "format": "date-time"},
                "action": {"type": ["string", "null"], "enum": ["reconnect", "ask_admin", None],
                           "description": "what the pane offers: reconnect (sync disabled for an error the "
                                          "person fixes by connecting again), ask_admin (an administrator "
                                          "turned sync off: every reconnect is refused with locked_by_admin)"}}},
            "settings": {"type": "object"},
            "locked_controls": {"type": "object", "description": "pause / deactivate refused by the org policy "
                                "(mass-activated mailbox): the reason to show, per control",
                                "properties": {"pause": {"type": "string"}, "deactivate": {"type": "string"}}},
            "job": {"type": ["string", "null"], "enum": ["queued", "running", "retry_scheduled", None]},
            "running_now": {"type": "boolean"},
            "recent_runs": {"type": "array", "items": {"type": "object"}},
            "quarantine": {"type": "object"},
            "backoff": {"type": ["object", "null"]},
            "api_usage": {"type": ["object", "null"]},
        }},
        "ItemStatus": {"type": "object", "required": ["kind", "status"], "properties": {
            "kind": {"type": "string", "enum": ["email", "event"]},
            "status": {"type": "string", "enum": ["logged", "not_yet", "not_logged"]},
            "reason": {"type": "string"},
            "salesforce_code": {"type": "string"},
            "source": {"type": ["string", "null"], "enum": ["trail", "salesforce", None]},
            "at": {"type": ["string", "null"], "format": "date-time"},
            "next_run": {"type": ["string", "null"], "format": "date-time"},
            "records": {"type": "array", "items": {"type": "object", "properties": {
                "object": {"type": "string"}, "id": {"type": "string"}, "url": {"type": "string"},
                "people": {"type": "array", "items": {"type": "object"}}}}},
            "can_log_now": {"type": "boolean"},
            "sync_state": {"type": "string"},
        }},
    },
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Sidebar Sync API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": COMPONENTS,
    }


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI description of this API."""
    return jsonify(document())
