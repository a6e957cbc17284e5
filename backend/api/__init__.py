"""The JSON API for the task pane and administrators (``/api``), one error format throughout."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

# Route modules register themselves on ``bp`` when imported.
from backend.api import exchange, openapi, session, sync  # noqa: E402, F401

__all__ = ["bp"]
