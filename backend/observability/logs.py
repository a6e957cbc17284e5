"""Log lines: ``text`` for development, ``json`` (one object a line) for the log pipeline.

A JSON line carries the run id, a hash of the mailbox id, the org id, the event and its counts when
the caller gives them (``extra=``), never a secret or mail content. Messages that still name a
mailbox as ``mid=<id>`` have the id replaced by its hash, so no line carries it in clear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# The structured fields a caller may pass in ``extra``.
FIELDS = ("event", "run_id", "mailbox", "org_id", "counts", "status")
_MID = re.compile(r"\bmid=([^\s,]+)")


def mailbox_hash(mailbox_id: str) -> str:
    """A short stable hash of a mailbox id, to follow one mailbox through the logs without naming it."""
    return hashlib.sha256(mailbox_id.encode()).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line (mailbox ids in the message hashed)."""
        message = _MID.sub(lambda m: "mailbox=" + mailbox_hash(m.group(1)), record.getMessage())
        data: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname,
                                "logger": record.name, "message": message}
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(level: str, fmt: str) -> None:
    """Set up the root logger as ``logging.basicConfig`` does (once per process), in ``text`` or ``json``."""
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
        logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=TEXT_FORMAT)
