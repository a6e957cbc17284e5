"""JSON log lines: one object a line, structured fields, mailbox ids hashed; LOG_FORMAT checked."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from backend.config import ConfigError, Settings
from backend.observability.logs import JsonFormatter, RedactingRecordFactory, TextFormatter, mailbox_hash, redact


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


MID = "u" + "0123456789abcdef01234567"  # a mailbox id as store/users.user_id_for makes them


@pytest.mark.parametrize(("text", "expected"), [
    (f"Worker w1: sync: sync mailbox=x ({MID})", f"Worker w1: sync: sync mailbox=x ({mailbox_hash(MID)})"),
    (f"Job OK (sync-{MID})", f"Job OK (sync-{mailbox_hash(MID)})"),
    (f"job notify-{MID}-auth failed", f"job notify-{mailbox_hash(MID)}-auth failed"),
    (f"consent uid={MID} mid={MID}", f"consent uid={mailbox_hash(MID)} mailbox={mailbox_hash(MID)}"),
    (f"closing failed (mid={MID})", f"closing failed (mailbox={mailbox_hash(MID)})"),
    ("mid=m-42 x", f"mailbox={mailbox_hash('m-42')} x"),
    (f"no id: x{MID} {MID}0 org=00Dxx", f"no id: x{MID} {MID}0 org=00Dxx"),
])
def test_mailbox_ids_are_found_in_job_ids_and_fields(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_record_factory_rewrites_only_records_that_name_a_mailbox() -> None:
    factory = RedactingRecordFactory(logging.LogRecord)
    named = factory("rq.worker", logging.INFO, __file__, 1, "Job OK (%s)", (f"sync-{MID}",), None)
    assert named.getMessage() == f"Job OK (sync-{mailbox_hash(MID)})" and MID not in str(named.__dict__)
    plain = factory("x", logging.INFO, __file__, 1, "read=%d", (3,), None)
    assert (plain.msg, plain.args) == ("read=%d", (3,))  # kept as logged: template and arguments
    broken = factory("x", logging.INFO, __file__, 1, "read=%d", ("three",), None)
    assert broken.args == ("three",)  # a bad format is logging's to report, not the caller's crash


def test_a_traceback_naming_a_mailbox_is_hashed_in_both_formats() -> None:
    try:
        raise KeyError(MID)
    except KeyError:
        import sys

        record = logging.LogRecord("backend.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert MID not in TextFormatter().format(record) and mailbox_hash(MID) in TextFormatter().format(record)
    assert MID not in JsonFormatter().format(record)


def test_a_traceback_is_hashed_for_any_handler_and_an_odd_id_never_breaks_a_log_call() -> None:
    factory = RedactingRecordFactory(logging.LogRecord)
    try:
        raise KeyError(MID)
    except KeyError:
        import sys

        record = factory("rq.worker", logging.ERROR, __file__, 1, "job failed mid=%s", ("odd\udc80",), sys.exc_info())
    # A formatter of RQ's own (not ours) prints the traceback the factory already rewrote.
    text = logging.Formatter("%(message)s").format(record)
    assert MID not in text and mailbox_hash(MID) in text
    assert "odd" not in record.getMessage() and "mailbox=" + mailbox_hash("odd\udc80") in record.getMessage()
