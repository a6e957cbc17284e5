"""Sidebar Sync: the backend of the Outlook add-in that logs email and meetings in Salesforce.

:func:`create_app` is the only place the application is assembled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from backend.config import Settings

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from ``config`` (a mapping of setting names), or from the environment."""
    settings = Settings.load(config) if config is not None else Settings.from_environ()
    app = Flask(__name__, static_folder=None, instance_relative_config=True)
    from backend.observability.logs import configure

    configure(settings.LOG_LEVEL, settings.LOG_FORMAT)
    # Bodies larger than this are refused before a view reads them (413); views set tighter limits.
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    app.config["PREFERRED_URL_SCHEME"] = "https"
    app.json.sort_keys = False  # type: ignore[attr-defined]

    from backend import extensions

    extensions.init_app(app, settings)

    from backend.api import bp as api_bp
    from backend.api.errors import register_error_handlers
    from backend.auth import console, google, microsoft, salesforce
    from backend.hooks import bp as hooks_bp
    from backend.web import add_security_headers
    from backend.web import bp as web_bp

    app.register_blueprint(web_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(salesforce.bp)
    app.register_blueprint(microsoft.bp)
    app.register_blueprint(google.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(hooks_bp)
    register_error_handlers(app)
    add_security_headers(app)

    from backend.cli import register_commands

    register_commands(app)
    return app
