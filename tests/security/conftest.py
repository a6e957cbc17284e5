"""Fixtures of the security suite: the SMTP sink, mass activation's environment, captured app logs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from backend.observability.logs import TEXT_FORMAT, JsonFormatter
from sandbox.harness.exchange import ExchangeHarness
from sandbox.harness.graph import GraphHarness
from sandbox.smtp import SmtpSink, smtp_sink  # noqa: F401 - fixture
from tests.conftest import GoogleFake
from tests.mass_env import JWT_KEYS, graph, mass  # noqa: F401 - fixtures


@pytest.fixture
def mass_config(app_config: dict[str, Any], graph: GraphHarness,  # noqa: F811 - the fixtures imported above
                ews: ExchangeHarness, fake_google: GoogleFake, smtp_sink: SmtpSink) -> dict[str, Any]:  # noqa: F811
    """Mass activation's settings for every org provider: Graph, the fake Exchange and the fake Google."""
    return {**app_config, **graph.settings_overrides(), **ews.settings_overrides(), **fake_google.settings(),
            "SALESFORCE_JWT_PRIVATE_KEY": JWT_KEYS[0], "SMTP_URL": smtp_sink.url, "MAIL_FROM": "sync@sidebar.example"}


class AppLogs:
    """This process's log records, rendered in both ``LOG_FORMAT`` forms (``text`` and ``json``)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def texts(self) -> dict[str, str]:
        """Place -> every captured record formatted as text, and as JSON lines."""
        text, json_lines = logging.Formatter(TEXT_FORMAT), JsonFormatter()
        records = self.caplog.records
        return {"app log (text)": "\n".join(text.format(r) for r in records),
                "app log (json)": "\n".join(json_lines.format(r) for r in records)}


@pytest.fixture
def app_logs(caplog: pytest.LogCaptureFixture) -> AppLogs:
    """Every log record of this process from DEBUG up (the app's, the jobs run here, the libraries')."""
    caplog.set_level(logging.DEBUG)
    return AppLogs(caplog)
