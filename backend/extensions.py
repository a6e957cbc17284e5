"""Redis, queues, the store, crypto and the session interface, kept in ``app.extensions``.

The edges (views, job entry points, the CLI) reach them through :func:`services` (in a request or
an app context) and hand what domain code needs down as arguments; nothing holds a global
connection, and tests build apps with their own configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import Flask, current_app
from flask_session.redis import RedisSessionInterface
from redis import Redis
from rq import Queue

from backend.clients import Clients
from backend.config import Settings
from backend.security.crypto import SecretBox, Signer
from backend.store import Store
from backend.sync.engine import SyncEngine

EXTENSION_KEY = "sidebar_sync"

# Queue names. "interactive" holds what a person is waiting for (Sync now, the first run after
# connecting); "sync" holds background runs; workers take them in that order.
QUEUE_INTERACTIVE = "interactive"
QUEUE_SYNC = "sync"
QUEUE_NOTIFY = "notify"
QUEUE_NAMES = (QUEUE_INTERACTIVE, QUEUE_SYNC, QUEUE_NOTIFY)


@dataclass
class Services:
    """The application's long-lived objects."""

    settings: Settings
    redis: Redis  # decodes to str: the store's client
    redis_raw: Redis  # bytes: RQ and Flask-Session
    store: Store
    signer: Signer
    box: SecretBox
    clients: Clients
    queues: dict[str, Queue] = field(default_factory=dict)

    @property
    def engine(self) -> SyncEngine:
        """The sync engine over this app's store, settings and clients."""
        return SyncEngine(self.store, self.settings, self.clients)

    def queue(self, name: str) -> Queue:
        """One of :data:`QUEUE_NAMES`."""
        return self.queues[name]


# Where scripts/dev keeps its embedded Redis (scripts/devserver.py VAR / "redis").
DEV_REDIS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var", "redis")


def resolve_redis_url(settings: Settings, instance_path: str) -> str:
    """``REDIS_URL``, or in development the Redis ``scripts/dev`` runs, else an embedded one started on demand."""
    if settings.REDIS_URL:
        return settings.REDIS_URL
    if not settings.development:
        # Settings.check() already refuses this; kept as a guard for direct callers.
        raise RuntimeError("REDIS_URL is required in production")
    from backend.embedded_redis import EmbeddedRedis, attach_or_start

    # A `flask` command next to a running scripts/dev talks to its Redis (the demo's data).
    running = EmbeddedRedis(DEV_REDIS_DIR)
    if running.alive():
        return running.url
    return attach_or_start(os.path.join(instance_path, "redis"))


class PartitionedRedisSessionInterface(RedisSessionInterface):
    """Flask-Session's Redis interface, adding ``Partitioned`` (CHIPS) to the cookie it sets.

    Flask-Session 0.8 ignores ``SESSION_COOKIE_PARTITIONED``. The sign-in dialog is a top-level
    window, so the cookie is first-party there; Partitioned keeps it usable where a browser would
    otherwise treat it as third-party. Flask-Session also clears an emptied session's cookie
    without ``Secure``, ``HttpOnly`` or ``SameSite``; browsers refuse a Partitioned cookie without
    Secure, so that clearing would never land: the missing attributes are added to it too.
    """

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        """Save as Flask-Session does, then mark our session cookie Partitioned (and Secure, HttpOnly, SameSite)."""
        super().save_session(app, session, response)
        name = app.config["SESSION_COOKIE_NAME"]
        cookies = response.headers.getlist("Set-Cookie")
        if not cookies:
            return
        response.headers.remove("Set-Cookie")
        wanted = [("secure", "Secure", app.config["SESSION_COOKIE_SECURE"]),
                  ("httponly", "HttpOnly", app.config["SESSION_COOKIE_HTTPONLY"]),
                  ("samesite", f"SameSite={app.config['SESSION_COOKIE_SAMESITE']}",
                   bool(app.config["SESSION_COOKIE_SAMESITE"])),
                  ("partitioned", "Partitioned", True)]
        for cookie in cookies:
            if cookie.startswith(f"{name}="):
                present = {part.strip().split("=", 1)[0].lower() for part in cookie.split(";")[1:]}
                cookie = "; ".join([cookie, *(attr for key, attr, on in wanted if on and key not in present)])
            response.headers.add("Set-Cookie", cookie)


def init_app(app: Flask, settings: Settings) -> Services:
    """Create the services for ``app`` and register them in ``app.extensions``."""
    url = resolve_redis_url(settings, app.instance_path)
    pool_args: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5, "health_check_interval": 30}
    client = redis.Redis.from_url(url, decode_responses=True, **pool_args)
    raw = redis.Redis.from_url(url, **pool_args)
    keys = list(settings.ENCRYPTION_KEYS)
    if not keys:
        # Development without keys: derive one from the (development) secret so a restart can
        # still read what it stored. Settings.check() forbids this outside development.
        import base64
        import hashlib

        seed = (settings.SECRET_KEY or "development-only").encode()
        keys = [base64.urlsafe_b64encode(hashlib.sha256(b"dev-fernet:" + seed).digest()).decode()]
    box = SecretBox(keys)
    secret_key = settings.SECRET_KEY or "development-only-secret-key-not-for-production"
    services = Services(
        settings=settings,
        redis=client,
        redis_raw=raw,
        store=Store.build(client, settings.KEY_PREFIX, box, settings.SECRET_KEY),
        signer=Signer(secret_key),
        box=box,
        clients=Clients.from_settings(settings),
        queues={name: Queue(name, connection=raw) for name in QUEUE_NAMES},
    )
    app.config.update(
        SECRET_KEY=secret_key,
        SESSION_TYPE="redis",
        SESSION_REDIS=raw,
        SESSION_KEY_PREFIX=settings.KEY_PREFIX + "fsession:",
        SESSION_SERIALIZATION_FORMAT="msgpack",
        SESSION_PERMANENT=True,
        SESSION_COOKIE_NAME="ss_dialog",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="None",
        # The dialog session only carries an OAuth flow in progress.
        PERMANENT_SESSION_LIFETIME=900,
    )
    app.session_interface = PartitionedRedisSessionInterface(
        app,
        client=raw,
        key_prefix=app.config["SESSION_KEY_PREFIX"],
        permanent=True,
        serialization_format="msgpack",
    )
    app.extensions[EXTENSION_KEY] = services
    return services


def services() -> Services:
    """The current app's services."""
    result: Services = current_app.extensions[EXTENSION_KEY]
    return result
