"""Fixtures of the security suite: the SMTP sink, mass activation's environment, captured app logs."""

from __future__ import annotations

import logging

import pytest

from backend.observability.logs import TEXT_FORMAT, JsonFormatter
from sandbox.smtp import smtp_sink  # noqa: F401 - fixture
from tests.exchange_mass_env import mass_config  # noqa: F401 - fixture: Graph's and Exchange's settings both
from tests.mass_env import graph, mass  # noqa: F401 - fixtures


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
