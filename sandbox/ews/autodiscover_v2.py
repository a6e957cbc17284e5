"""Autodiscover v2 for the fake Exchange: ``GET /autodiscover/autodiscover.json/v1.0/{email}?Protocol=EWS``.

Anonymous, as Exchange serves it: the answer is ``{"Protocol": "EWS", "Url": ...}``. Servers that
predate it (the fake's default) answer 404, and clients fall back to POX Autodiscover.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote

V2_PATH = "/autodiscover/autodiscover.json"

Answer = tuple[str, list[tuple[str, str]], bytes]


def is_v2_request(method: str, path: str) -> bool:
    """Whether a request is for Autodiscover v2."""
    return method == "GET" and path.lower().startswith(V2_PATH)


def answer(enabled: bool, path: str, query: str, ews_url: str) -> Answer:
    """The v2 answer for ``path`` (404 when the server does not speak v2, 400 for another protocol)."""
    not_found: Answer = ("404 Not Found", [("Content-Type", "text/html")], b"<html><body>Not found</body></html>")
    if not enabled:
        return not_found
    email = unquote(path[len(V2_PATH):].strip("/").removeprefix("v1.0").strip("/"))
    protocol = (parse_qs(query).get("Protocol") or [""])[0]
    if "@" not in email or protocol.lower() != "ews":
        body = json.dumps({"ErrorCode": "InvalidProtocol", "ErrorMessage": "The given protocol value is invalid."})
        return "400 Bad Request", [("Content-Type", "application/json")], body.encode()
    return "200 OK", [("Content-Type", "application/json")], json.dumps({"Protocol": "EWS", "Url": ews_url}).encode()
