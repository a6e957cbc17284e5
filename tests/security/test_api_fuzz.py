"""Schemathesis against ``/api/openapi.json``, in-process: no 5xx, documented statuses, one error format."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, status_code_conformance

from sandbox.login import login
from sandbox.tls import TestCA


@pytest.fixture
def bearer(client: FlaskClient, ca: TestCA) -> dict[str, str]:
    """A valid bearer token of a logged-in user."""
    return {"Authorization": f"Bearer {login(client, ca.ca_path).token}"}


def _conforms(case: Any, headers: dict[str, str]) -> None:
    """Documented statuses, never a 5xx, every error ``{"error": {"code", "message"}}``."""
    response = case.call(headers=headers)
    case.validate_response(response, checks=(not_a_server_error, status_code_conformance))
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), response.text


def test_api_conforms(app: Flask, bearer: dict[str, str]) -> None:
    """Every operation of the document, with and without a valid token (a few examples each, < 60 s)."""
    # Driven by hand (pytest 9 breaks schemathesis' own pytest plugin): one Hypothesis run per operation.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            for headers in ({}, bearer):
                _conforms(case, headers)

        run()
