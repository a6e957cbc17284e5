"""The ``/api`` blueprint the route modules register their views on."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")
