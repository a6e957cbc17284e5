"""Fixtures of the sync tests: Alice signed in, her sync running on an in-memory mailbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import services
from tests.sfhelpers import SalesforceUser, log_in
from tests.sync.items import OWNER, ListMailbox


@pytest.fixture
def box() -> ListMailbox:
    """The in-memory mailbox."""
    return ListMailbox(page_size=50)


@pytest.fixture
def sf(app: Flask, client: FlaskClient, ca: Any, fake_salesforce: Any, box: ListMailbox) -> Iterator[SalesforceUser]:
    """Alice logged in with a running sync mailbox backed by ``box``."""
    user = log_in(app, client, ca.ca_path, fake_salesforce)
    with app.app_context():
        svc = services()
        svc.clients.mailbox_factory = lambda provider, ctx: box
        svc.store.mailboxes.activate(user.uid, "list", OWNER, [], {})
        user.data.reset_calls()
        yield user
