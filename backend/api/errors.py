"""One error format for every ``/api`` answer: ``{"error": {"code", "message"}}`` plus a status."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from backend.security.crypto import DecryptError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a person can read; ``code`` is snake_case and stable for the task pane."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    """The JSON error response."""
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    resp = jsonify({"error": body})
    resp.status_code = status
    if status == 429 and extra.get("retry_after"):
        resp.headers["Retry-After"] = str(int(extra["retry_after"]))
    return resp


# Codes for HTTP errors Flask raises by itself (routing, body size, methods).
_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be understood."),
    401: ("unauthorized", "Log in to Salesforce first."),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "There is nothing at this address."),
    405: ("method_not_allowed", "This address does not accept that method."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send the request body as application/json."),
    429: ("rate_limited", "Too many requests. Try again later."),
}


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api" or request.path == "/healthz"


UNREADABLE_SIGN_IN_MESSAGE = (
    "This server cannot read your saved sign-in right now (a configuration problem on our side). "
    "Nothing was lost: try again later.")


def register_error_handlers(app: Flask) -> None:
    """JSON errors under /api (never HTML, never a stack trace)."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if not _wants_json():
            return exc
        status = exc.code or 500
        code, message = _HTTP_CODES.get(status, ("http_error", exc.description or "Request failed."))
        return error_response(status, code, message)

    @app.errorhandler(DecryptError)
    def _unreadable_secret(exc: DecryptError) -> Any:
        # A configuration error (a key missing from this process's ENCRYPTION_KEYS, typically
        # 'keys rotate' run before every process had the new list), never a revocation: nothing is
        # deleted, and the person is not logged out.
        log.error("a stored secret cannot be decrypted with this process's ENCRYPTION_KEYS on %s %s: roll the "
                  "new key list out to every process (web and workers) before 'flask keys rotate'",
                  request.method, request.path)
        return error_response(503, "server_misconfigured", UNREADABLE_SIGN_IN_MESSAGE)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        # Logged with the traceback for us; the person gets a plain message and no internals.
        log.exception("unhandled error on %s %s", request.method, request.path)
        if _wants_json():
            return error_response(500, "internal_error", "Something went wrong on our side. Try again shortly.")
        return Response("Something went wrong on our side. Try again shortly.", status=500, mimetype="text/plain")
