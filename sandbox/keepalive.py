"""A keep-alive HTTP/1.1 HTTPS server for the fakes: connections stay open between requests, as real services keep them.

The fake EWS needs it (NTLM authenticates a connection, so it must stay open); the fake Graph and
Salesforce run on it too, so that a benchmark pays for TLS handshakes as production does (once per
connection, not once per request: werkzeug's development server answers ``Connection: close``).
"""

from __future__ import annotations

import io
import itertools
import socket
import socketserver
import ssl
import threading
import time
from contextlib import suppress
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from sandbox.server import FakeServer, Recorder
from sandbox.tls import CertPair

# A dripping response (the fake EWS's ``drip`` failure) gives up (and closes) after this long, so a
# client without a deadline ends too.
DRIP_LIMIT_SECONDS = 15.0


class _KeepAliveHandler(BaseHTTPRequestHandler):
    """A small HTTP/1.1 WSGI handler that keeps connections open, as IIS and Graph do.

    Keep-alive matters: NTLM authenticates a *connection* (its three messages must share one), and
    exchangelib reads ``Connection: close`` on an error response as "server busy". Werkzeug's
    development handler cannot be used for this: it always closes, and after each response it
    reads and discards whatever the client sent within 10 ms, which on a kept-alive connection
    swallows the next request (an NTLM type 3 sent right after the challenge). So this handler
    reads exactly ``Content-Length`` bytes per request and nothing more.

    TLS is done here, in the connection's own thread, so one slow or refused handshake (a client
    rejecting an expired certificate) never stalls the accepting thread.
    """

    protocol_version = "HTTP/1.1"
    timeout = 30
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm holds the body
    # back until the client's delayed ACK (40 ms a response on a kept-alive connection).
    disable_nagle_algorithm = True
    _ids = itertools.count(1)
    _broken = False
    server: _KeepAliveServer

    def setup(self) -> None:
        """Give the connection an id and do the TLS handshake."""
        self.conn_id = next(self._ids)
        try:
            self.request.settimeout(10)
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            self._broken = True  # the client refused us (e.g. our expired certificate)
            with suppress(OSError):
                self.request.close()
            return
        super().setup()

    def handle(self) -> None:
        """Serve requests until the client closes (nothing after a failed handshake)."""
        if self._broken:
            return
        with suppress(ConnectionError, TimeoutError, ssl.SSLError, OSError):
            super().handle()

    def finish(self) -> None:
        """Flush and close the connection (nothing to flush after a failed handshake)."""
        if not self._broken:
            with suppress(OSError):
                super().finish()
            # The TLS socket replaced the accepted one (which socketserver would close): close it
            # here, or the client may find it open and send its next request into the void.
            with suppress(OSError):
                self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the recorder keeps what tests need."""

    def _run(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "PATH_INFO": unquote(path),
            "QUERY_STRING": query, "SERVER_NAME": self.server.server_address[0],
            "SERVER_PORT": str(self.server.server_address[1]), "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0], "REMOTE_PORT": self.client_address[1],
            "CONTENT_LENGTH": str(length) if length else "",
            "wsgi.version": (1, 0), "wsgi.url_scheme": "https", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(), "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "werkzeug.socket": self.connection, "fake.conn": self.conn_id,
        }
        if self.headers.get("Content-Type"):
            environ["CONTENT_TYPE"] = self.headers["Content-Type"]
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                continue
            environ[name] = f"{environ[name]},{value}" if name in environ else value
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        payload = b"".join(self.server.app(environ, start_response))
        if environ.get("fake.cut"):
            # The request was processed, its answer is lost: close without a byte of response.
            self.close_connection = True
            with suppress(OSError):
                self.request.shutdown(socket.SHUT_RDWR)
            return
        code, _, reason = captured["status"].partition(" ")
        self.send_response(int(code), reason)
        names = set()
        for key, value in captured["headers"]:
            self.send_header(key, value)
            names.add(key.lower())
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection and "connection" not in names:
            # The client asked to close (or spoke HTTP/1.0): say so, as servers do.
            self.send_header("Connection", "close")
        self.end_headers()
        drip = environ.get("fake.drip")
        if drip is not None and self.command != "HEAD":
            self.wfile.flush()
            self._drip(payload, float(drip))
            return
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _drip(self, payload: bytes, interval: float) -> None:
        """Send ``payload`` one byte per ``interval`` (never idle long enough for a read timeout)."""
        started = time.monotonic()
        self.close_connection = True  # whatever happens, this connection is done afterwards
        for n in range(len(payload)):
            if time.monotonic() - started > DRIP_LIMIT_SECONDS:
                return
            try:
                self.wfile.write(payload[n:n + 1])
                self.wfile.flush()
            except OSError:
                return  # the client cut the connection
            time.sleep(interval)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _run


class _KeepAliveServer(socketserver.ThreadingTCPServer):
    """A threaded TCP server handing each connection to :class:`_KeepAliveHandler`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: Any, tls: ssl.SSLContext) -> None:
        self.app = app
        self.tls = tls
        super().__init__(address, _KeepAliveHandler)

    @property
    def server_port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])


class KeepAliveFakeServer(FakeServer):
    """A :class:`FakeServer` whose connections stay open between requests (TLS per connection thread)."""

    def __init__(self, app: Any, cert: CertPair, host: str = "127.0.0.1", port: int = 0) -> None:
        self.recorder = app if isinstance(app, Recorder) else Recorder(app)
        self._server = _KeepAliveServer((host, port), self.recorder, cert.server_context())  # type: ignore[assignment]
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-ka:{self.port}", daemon=True)
