"""Serve a fake service (any WSGI app) on loopback https in a background thread, and record calls.

Every fake is a small Flask app wrapped in :class:`Recorder`, so tests can assert exactly which
requests the product made (method, path, query, body, response status) and how many were in
flight at once.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.tls import CertPair

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class Call:
    """One request a fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    started: float
    status: int = 0
    finished: float = 0.0
    tag: str = ""
    # The connection it came on (keep-alive servers number them; 0 on werkzeug's, one per request).
    conn: int = 0


@dataclass
class Recorder:
    """WSGI middleware that records calls and the peak number of requests in flight per tag."""

    app: WSGIApp
    # Groups in-flight counting (for example, by mailbox); default: one group for all requests.
    tag_of: Callable[[dict[str, Any]], str] = lambda environ: ""
    calls: list[Call] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    peak_in_flight: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        tag = self.tag_of(environ)
        call = Call(
            method=environ["REQUEST_METHOD"],
            path=environ.get("PATH_INFO", ""),
            query=parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True),
            headers=headers,
            body=body,
            started=time.monotonic(),
            tag=tag,
            conn=int(environ.get("fake.conn") or 0),
        )
        with self.lock:
            self.calls.append(call)
            self.in_flight[tag] = self.in_flight.get(tag, 0) + 1
            self.peak_in_flight[tag] = max(self.peak_in_flight.get(tag, 0), self.in_flight[tag])

        def recording_start_response(status: str, response_headers: Any, exc_info: Any = None) -> Any:
            call.status = int(status.split()[0])
            return start_response(status, response_headers, exc_info)

        try:
            # Materialise the body so the in-flight window covers the whole response.
            return [b"".join(self.app(environ, recording_start_response))]
        finally:
            call.finished = time.monotonic()
            with self.lock:
                self.in_flight[tag] -= 1

    def reset(self) -> None:
        """Forget recorded calls and peaks."""
        with self.lock:
            self.calls.clear()
            self.peak_in_flight.clear()

    def matching(self, method: str | None = None, path_prefix: str = "") -> list[Call]:
        """Recorded calls, optionally filtered by method and path prefix."""
        with self.lock:
            return [
                c for c in self.calls
                if (method is None or c.method == method) and c.path.startswith(path_prefix)
            ]


class FakeServer:
    """Runs a WSGI app over https on 127.0.0.1 in a daemon thread."""

    def __init__(self, app: WSGIApp, cert: CertPair, host: str = "127.0.0.1", port: int = 0) -> None:
        self.recorder = app if isinstance(app, Recorder) else Recorder(app)
        self._server: BaseWSGIServer = make_server(
            host, port, self.recorder, threaded=True, ssl_context=cert.server_context()
        )
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        """The https origin of this server."""
        return f"https://{self.host}:{self.port}"

    def start(self) -> FakeServer:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
