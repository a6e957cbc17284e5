"""JSON log lines: one object a line, structured fields, mailbox ids hashed; LOG_FORMAT checked."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from backend.config import ConfigError, Settings
from backend.observability.logs import JsonFormatter, mailbox_hash


def line(msg: str, *args: Any, **extra: Any) -> dict[str, Any]:
    """One record formatted as JSON and parsed back."""
    record = logging.LogRecord("backend.x", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    text = JsonFormatter().format(record)
    assert "\n" not in text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_a_json_line_carries_the_structured_fields() -> None:
    got = line("sync run status=%s", "ok", event="sync_run", run_id="r1", mailbox=mailbox_hash("m1"),
               org_id="00Dxx", counts={"written": 2}, unrelated="not exported")
    assert got["message"] == "sync run status=ok" and got["level"] == "INFO" and got["logger"] == "backend.x"
    assert (got["event"], got["run_id"], got["org_id"], got["counts"]) == ("sync_run", "r1", "00Dxx", {"written": 2})
    assert got["mailbox"] == mailbox_hash("m1") != "m1"
    assert "unrelated" not in got


@pytest.mark.parametrize("msg", ["sync run mid=%s status=ok", "failed mid=%s, code=x", "mid=%s"])
def test_a_mailbox_id_in_a_message_is_hashed(msg: str) -> None:
    got = line(msg, "mailbox-secret-id-42")
    assert "mailbox-secret-id-42" not in json.dumps(got)
    assert "mailbox=" + mailbox_hash("mailbox-secret-id-42") in got["message"]


@pytest.mark.parametrize("bad", ["JSON ", "xml", "", "logfmt"])
def test_log_format_is_text_or_json(bad: str) -> None:
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.load({"SIDEBAR_ENV": "development", "LOG_FORMAT": bad})
    assert Settings.load({"SIDEBAR_ENV": "development"}).LOG_FORMAT == "text"
