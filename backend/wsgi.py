"""The WSGI entry point for gunicorn: ``gunicorn backend.wsgi:app``."""

from __future__ import annotations

import sys

from backend import create_app
from backend.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One clear line naming what is missing, not a traceback.
    print(f"sidebar-sync: configuration error: {exc}", file=sys.stderr)
    sys.exit(3)
