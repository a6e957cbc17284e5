"""Log lines: ``text`` for development, ``json`` (one object a line) for the log pipeline.

A JSON line carries the run id, a hash of the mailbox id, the org id, the event and its counts when
the caller gives them (``extra=``), never a secret or mail content. No line, in either format,
carries a mailbox id in clear: :func:`configure` installs a record factory that rewrites every
record of the process (ours, RQ's, a library's) as it is made, ``mid=<id>`` becoming
``mailbox=<hash>`` and any other mailbox id (RQ's job ids ``sync-<id>``, ``push-ensure-<id>``,
``uid=<id>``: a user's id is its mailbox's) its bare hash; a record's traceback is rendered and
rewritten then too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# The structured fields a caller may pass in ``extra``.
FIELDS = ("event", "run_id", "mailbox", "org_id", "counts", "status")
# A ``mid=`` field (whatever the id looks like), or a mailbox id anywhere: a mailbox's id is its user's,
# "u" and 24 hex digits (store/users.user_id_for), so the pattern finds it inside job ids too.
_IDS = re.compile(r"\bmid=([^\s,)]+)|\bu[0-9a-f]{24}\b")


def mailbox_hash(mailbox_id: str) -> str:
    """A short stable hash of a mailbox id, to follow one mailbox through the logs without naming it."""
    # surrogatepass: whatever follows a "mid=" in a message hashes (a log call must never raise).
    return hashlib.sha256(mailbox_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _hashed(match: re.Match[str]) -> str:
    """One found id as it is logged: ``mailbox=<hash>`` for a ``mid=`` field, else the bare hash."""
    if match.group(1) is not None:
        return "mailbox=" + mailbox_hash(match.group(1))
    return mailbox_hash(match.group(0))


def redact(text: str) -> str:
    """``text`` with every mailbox id in it replaced by its hash."""
    return _IDS.sub(_hashed, text)


# Renders tracebacks for the record factory (as logging.Formatter does by default).
_TRACEBACKS = logging.Formatter()


class RedactingRecordFactory:
    """The log record factory that hashes mailbox ids in each record's message as the record is made.

    A factory, not a handler's filter: it reaches the handlers RQ's worker sets up for itself (before
    the app exists) and any added later, and every record is rewritten once whoever formats it.
    """

    def __init__(self, base: Callable[..., logging.LogRecord]) -> None:
        self.base = base

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        """The base factory's record, its message rewritten when it names a mailbox."""
        record = self.base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report, when a handler formats
            return record
        clean = redact(message)
        if clean != message:
            # Only then: records without an id keep their template and arguments (grouping by template).
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # The traceback too, rendered once here: every formatter uses a record's exc_text as it
            # is, so RQ's own handlers (formatters of their own) print it hashed as well.
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        return record


class TextFormatter(logging.Formatter):
    """The ``text`` format, with mailbox ids hashed in tracebacks too."""

    def formatException(self, ei: Any) -> str:
        """The traceback, mailbox ids hashed (an exception's message may name one)."""
        return redact(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line (mailbox ids in the message hashed)."""
        message = redact(record.getMessage())
        data: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname,
                                "logger": record.name, "message": message}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(data, default=str)


def configure(level: str, fmt: str) -> None:
    """Set up the root logger as ``logging.basicConfig`` does (once per process), in ``text`` or ``json``."""
    if not isinstance(logging.getLogRecordFactory(), RedactingRecordFactory):
        logging.setLogRecordFactory(RedactingRecordFactory(logging.getLogRecordFactory()))
    root = logging.getLogger()
    if fmt == "json":
        # Our own stream handlers only (exact type): a test runner's capture handlers keep theirs.
        plain = [h for h in root.handlers if type(h) is logging.StreamHandler]
        if not root.handlers:
            plain = [logging.StreamHandler()]
            root.addHandler(plain[0])
            root.setLevel(getattr(logging, level.upper(), logging.INFO))
        for handler in plain:
            handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
        # basicConfig does nothing when the root logger has handlers already (then this one is unused).
        logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
