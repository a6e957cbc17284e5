"""Reading and checking JSON request bodies before any work is done."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from backend.api.errors import ApiError

# Most API bodies are a few hundred bytes; the CSV of a mass activation is the exception.
DEFAULT_MAX_BODY = 16 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Deliberately simple: one @, something on each side, a dot in the domain, no spaces.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def json_body(max_bytes: int = DEFAULT_MAX_BODY) -> dict[str, Any]:
    """The request's JSON object; 413, 415 or 400 with a specific code otherwise."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise ApiError(413, "payload_too_large", f"The request body is larger than {max_bytes} bytes.")
    mimetype = request.mimetype or ""
    if mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the request body as application/json.")
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise ApiError(413, "payload_too_large", f"The request body is larger than {max_bytes} bytes.")
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # nesting too deep is invalid too
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_input", "The request body must be a JSON object.")
    return data


def text_field(
    data: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    max_len: int = 256,
    allow_control: bool = False,
    label: str | None = None,
) -> str:
    """A string field, stripped; ``invalid_input`` naming the field when wrong."""
    label = label or name
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ApiError(400, "invalid_input", f"{label} is required.", field=name)
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "invalid_input", f"{label} must be text.", field=name)
    if len(value) > max_len:
        raise ApiError(400, "invalid_input", f"{label} is too long (at most {max_len} characters).", field=name)
    if not allow_control and _CONTROL.search(value):
        raise ApiError(400, "invalid_input", f"{label} contains characters that are not allowed.", field=name)
    return value.strip()


def email_field(data: dict[str, Any], name: str, *, required: bool = True, label: str | None = None) -> str:
    """An email address field, lower-cased."""
    value = text_field(data, name, required=required, max_len=254, label=label)
    if value and not _EMAIL.match(value):
        raise ApiError(400, "invalid_input", f"{label or name} is not an email address.", field=name)
    return value.lower()


def is_email(value: str) -> bool:
    """True when ``value`` looks like an email address."""
    return bool(_EMAIL.match(value)) and len(value) <= 254


def bool_field(data: dict[str, Any], name: str, default: bool | None = None) -> bool | None:
    """An optional boolean field."""
    if name not in data:
        return default
    value = data[name]
    if not isinstance(value, bool):
        raise ApiError(400, "invalid_input", f"{name} must be true or false.", field=name)
    return value


def choice_field(data: dict[str, Any], name: str, choices: tuple[str, ...], *, required: bool = True) -> str:
    """A field whose value must be one of ``choices``."""
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or value not in choices:
        raise ApiError(400, "invalid_input", f"{name} must be one of: {', '.join(choices)}.", field=name)
    return value
