"""Schemathesis against ``/api/openapi.json``, in-process: no 5xx, documented statuses, one error format.

Every operation gets up to ``EXAMPLES`` generated cases, each sent twice: without a token and with a
valid bearer token. A fuzzed ``DELETE /api/session`` (or ``/api/sessions``) logs that token out, after which every call
"with a valid token" would only meet the 401 check: so the token is renewed after a logout, and the
test asserts that the calls with a token really got past authentication (no 401).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from backend.api.tokens import issue_token
from sandbox.login import login
from sandbox.tls import TestCA
from tests.conftest import RunningFake

EXAMPLES = 25
# The operations that revoke the caller's token: DELETE /api/session (this pane), /api/sessions (all).
LOGOUTS = {"/api/session", "/api/sessions"}


class Bearer:
    """A logged-in user's token, renewed when a fuzzed logout revoked it."""

    def __init__(self, app: Flask, client: FlaskClient, ca_path: str) -> None:
        self.app = app
        self.renewals = 0
        session = login(client, ca_path)
        self.uid, self.token = session.uid, session.token

    def headers(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}

    def after(self, case: Any, status: int) -> None:
        """Log in again when ``case`` was a logout (this pane's, or everywhere's) that worked."""
        if case.method.upper() == "DELETE" and case.path in LOGOUTS and status < 300:
            # A new token for the same login, as POST /api/session issues it (a fresh sign-in each time
            # would meet the dialog's own flood limit).
            with self.app.app_context():
                self.token = issue_token(self.uid).token
            self.renewals += 1


@pytest.fixture
def bearer(app: Flask, client: FlaskClient, ca: TestCA, fake_salesforce: RunningFake) -> Bearer:
    """A valid bearer token of a logged-in user, an administrator of her org (so /api/admin runs too), kept valid."""
    fake_salesforce.state.users["alice@acme.example"].is_admin = True
    return Bearer(app, client, ca.ca_path)


def _conforms(case: Any, headers: dict[str, str]) -> int:
    """Documented statuses, never a 5xx, every error ``{"error": {"code", "message"}}``; returns the status."""
    response = case.call(headers=headers)
    case.validate_response(response, checks=(not_a_server_error, status_code_conformance))
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), response.text
    return int(response.status_code)


def test_api_conforms(app: Flask, bearer: Bearer) -> None:
    """Every operation of the document, with and without a valid token (``EXAMPLES`` cases each, < 60 s)."""
    # Driven by hand (pytest 9 breaks schemathesis' own pytest plugin): one Hypothesis run per operation.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10
    statuses: dict[str, Counter[int]] = {"none": Counter(), "bearer": Counter()}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            statuses["none"][_conforms(case, {})] += 1
            status = _conforms(case, bearer.headers())
            statuses["bearer"][status] += 1
            bearer.after(case, status)

        run()
    calls = {who: sum(counter.values()) for who, counter in statuses.items()}
    # Enough cases to mean something, and the token's calls reached the handlers (not one 401).
    assert calls["bearer"] >= 4 * len(operations), calls
    assert statuses["bearer"][401] == 0, statuses["bearer"]
    assert set(statuses["none"]) - {401} <= {200, 201, 204, 400, 404, 405, 413, 415, 422, 429}, statuses["none"]
    print(f"\nschemathesis: {len(operations)} operations, calls {calls}, token renewed {bearer.renewals} times, "
          f"statuses {dict(statuses['bearer'])} with a token, {dict(statuses['none'])} without")
