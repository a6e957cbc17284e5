"""Gmail's batch format: several GETs in one ``multipart/mixed`` POST to ``/batch/gmail/v1``.

Each part is ``application/http`` holding one request line; the answer holds one
``application/http`` part per request (``Content-ID: <response-item-N>``) with its status line,
headers and JSON body. Gmail takes up to 100 parts and recommends at most 50.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import HTTP
from typing import Any

MAX_PARTS = 50
_STATUS_LINE = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})")
_ITEM = re.compile(r"<response-item-(\d+)>")


@dataclass
class PartAnswer:
    """One part of a batch answer."""

    status: int
    headers: dict[str, str]
    body: Any


def encode(paths: list[str]) -> tuple[str, bytes]:
    """(Content-Type, body) of a batch of GETs on ``paths`` (absolute paths on the API host)."""
    boundary = "batch_" + secrets.token_hex(12)
    chunks = [
        f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <item-{i}>\r\n\r\n"
        f"GET {path} HTTP/1.1\r\nAccept: application/json\r\n\r\n"
        for i, path in enumerate(paths)
    ]
    body = "".join(chunks) + f"--{boundary}--\r\n"
    return f"multipart/mixed; boundary={boundary}", body.encode("utf-8")


def _inner(raw: str) -> PartAnswer | None:
    """One part's answer; None when it cannot be read, so that the part is asked again rather than lost."""
    text = raw.lstrip("\r\n")
    head, _, rest = text.partition("\r\n\r\n") if "\r\n\r\n" in text else text.partition("\n\n")
    lines = head.splitlines()
    match = _STATUS_LINE.match(lines[0]) if lines else None
    if match is None:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    status = int(match.group(1))
    try:
        body: Any = json.loads(rest) if rest.strip() else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or not body:
        # A success must carry its resource: an empty or garbled 200 read as {} would be a message
        # without id, payload or labels, skipped by the run and never read again. An error's body
        # only adds detail, so the status alone still stands.
        if 200 <= status < 300:
            return None
        body = {}
    return PartAnswer(status, headers, body)


def decode(content_type: str, raw: bytes, count: int) -> dict[int, PartAnswer]:
    """The answers of a batch of ``count`` requests, by request index (unreadable parts left out: sent again)."""
    envelope = message_from_bytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw,
                                  policy=HTTP)
    answers: dict[int, PartAnswer] = {}
    if not envelope.is_multipart():
        return answers
    for position, part in enumerate(envelope.iter_parts()):
        match = _ITEM.search(str(part.get("Content-ID", "")))
        index = int(match.group(1)) if match else position
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        answer = _inner(text)
        if answer is not None and 0 <= index < count:
            answers[index] = answer
    return answers
