"""The JSON API for the task pane and administrators (``/api``), one error format throughout."""

from __future__ import annotations

# The route modules register their views on ``bp`` when imported.
from backend.api import (  # noqa: F401
    admin,
    admin_access_exchange,
    admin_access_exchange_openapi,
    admin_access_google,
    admin_access_google_openapi,
    admin_activate,
    admin_activate_openapi,
    admin_openapi,
    exchange,
    items,
    openapi,
    session,
    sync,
)
from backend.api.blueprint import bp

__all__ = ["bp"]
