"""The app a worker process runs jobs in: built once per process from the environment."""

from __future__ import annotations

import threading

from flask import Flask

_lock = threading.Lock()
_app: Flask | None = None


def worker_app() -> Flask:
    """The process's app (created on first use; jobs push its context)."""
    global _app
    with _lock:
        if _app is None:
            from backend import create_app

            _app = create_app()
        return _app


def use_app(app: Flask | None) -> None:
    """Set (or clear) the process's app: for tests and for processes that already built one."""
    global _app
    with _lock:
        _app = app
