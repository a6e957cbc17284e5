"""Helpers for tests of the Salesforce side of sync: a logged-in user and the connector built for them."""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient

from backend.auth.salesforce import credentials_for
from backend.connectors.crm import ApiUsage
from backend.connectors.salesforce.connector import SalesforceCrm, open_crm
from backend.extensions import services
from backend.store.users import User
from sandbox.login import LoggedIn, login
from sandbox.salesforce_rest import SalesforceData, data_of


@dataclass
class SalesforceUser:
    """A user logged in through the real dialog, and the fake org's data."""

    app: Flask
    session: LoggedIn
    data: SalesforceData

    @property
    def uid(self) -> str:
        """The user's id."""
        return self.session.uid

    def user(self) -> User:
        """The stored user (call inside an app context)."""
        user = services().store.users.get(self.uid)
        assert user is not None
        return user

    def crm(self, on_usage: Callable[[ApiUsage], None] | None = None) -> SalesforceCrm:
        """A fresh connector for one run (call inside an app context)."""
        user = self.user()
        svc = services()
        return open_crm(svc.settings, credentials_for(user), user.org_id, user.sf_user_id,
                        caps_cache=svc.store.capabilities, on_usage=on_usage)


def log_in(app: Flask, client: FlaskClient, ca_path: str, fake_salesforce: Any, **kwargs: Any) -> SalesforceUser:
    """Log alice in through the fake's dialog."""
    session = login(client, ca_path, **kwargs)
    return SalesforceUser(app, session, data_of(fake_salesforce.state))


def unpacked_forms(stored: bytes) -> list[bytes]:
    """A stored value as is, base64-decoded when it is base64, and each of those zlib-decompressed when it is."""
    forms = [stored]
    try:
        forms.append(base64.b64decode(stored, validate=True))
    except (binascii.Error, ValueError):
        pass
    for form in list(forms):
        try:
            forms.append(zlib.decompress(form))
        except zlib.error:
            pass
    return forms


def _readable(stored: bytes | str) -> str:
    """A stored value as text, with what RQ packs inside it unpacked too.

    RQ keeps a job's ``data`` (function, args, kwargs) and ``exc_info`` (the traceback) zlib
    compressed, and results base64 encoded: a subject in a job's arguments or a body quoted in a
    traceback would be invisible to a plain scan. Pickled strings are stored as UTF-8, so the
    decompressed bytes decoded leniently show them.
    """
    value = stored.encode("utf-8") if isinstance(stored, str) else stored
    forms = unpacked_forms(value)
    return "\n".join(form.decode("utf-8", "replace") for form in forms)


def values_of(client: redis.Redis, key: bytes) -> list[Any]:
    """Everything one key holds, whatever its type (a key that expired since SCAN holds nothing)."""
    kind = client.type(key)
    if kind == b"string":
        return [client.get(key) or b""]
    if kind == b"hash":
        return [v for pair in client.hgetall(key).items() for v in pair]
    if kind == b"list":
        return list(client.lrange(key, 0, -1))
    if kind == b"set":
        return sorted(client.smembers(key))
    if kind == b"zset":
        return list(client.zrange(key, 0, -1))
    if kind == b"stream":
        return [v for _, entry in client.xrange(key) or [] for pair in (entry or {}).items() for v in pair]
    if kind != b"none":  # a type no scan reads would hide what it holds
        raise AssertionError(f"the scan cannot read {kind!r} key {key!r}")
    return []


def bytes_client(raw: redis.Redis) -> redis.Redis:
    """A client of the same database that answers bytes (the scans read RQ's packed data too)."""
    kwargs = dict(raw.connection_pool.connection_kwargs)
    kwargs["decode_responses"] = False
    return redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))


def redis_text(raw: redis.Redis) -> str:
    """Every value in the test database, as one text (RQ's keys included, compressed job data unpacked)."""
    client = bytes_client(raw)
    parts: list[str] = []
    try:
        for key in client.scan_iter(count=1000):
            parts.append(key.decode("utf-8", "replace"))
            parts.extend(_readable(v) for v in values_of(client, key))
    finally:
        client.close()
    return "\n".join(parts)
