"""Helpers for tests of the Salesforce side of sync: a logged-in user and the connector built for them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient

from backend.auth.salesforce import credentials_for
from backend.connectors.crm import ApiUsage
from backend.connectors.salesforce import SalesforceCrm, open_crm
from backend.extensions import services
from backend.store.runs import CapabilityCacheAdapter
from backend.store.users import User
from tests.fakes.salesforce_rest import SalesforceData, data_of
from tests.helpers import LoggedIn, login


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
                        caps_cache=CapabilityCacheAdapter(svc.store.runs), on_usage=on_usage)


def log_in(app: Flask, client: FlaskClient, ca_path: str, fake_salesforce: Any, **kwargs: Any) -> SalesforceUser:
    """Log alice in through the fake's dialog."""
    session = login(client, ca_path, **kwargs)
    return SalesforceUser(app, session, data_of(fake_salesforce.state))


def redis_text(raw: redis.Redis) -> str:
    """Every value in the test database, as one text (RQ's keys included; bytes decoded leniently)."""
    parts = []
    for key in raw.scan_iter(count=1000):
        kind = raw.type(key)
        if kind == "string":
            parts.append(str(raw.get(key)))
        elif kind == "hash":
            parts.append(json.dumps(raw.hgetall(key), default=str))
        elif kind == "list":
            parts.append(json.dumps(raw.lrange(key, 0, -1), default=str))
        elif kind == "set":
            parts.append(json.dumps(sorted(raw.smembers(key)), default=str))
        elif kind == "zset":
            parts.append(json.dumps(raw.zrange(key, 0, -1), default=str))
        elif kind == "stream":
            parts.append(json.dumps(raw.xrange(key), default=str))
    return "\n".join(parts)
