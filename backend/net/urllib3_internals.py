"""The one place that relies on urllib3 internals: the hook that opens a connection's TCP socket.

The guard must choose the address a connection's socket goes to (the one it just checked), or a
hostile DNS server could answer a second lookup differently (DNS rebinding). urllib3 has no public
way to do that: ``HTTPConnection.connect()`` obtains its socket from the private ``_new_conn()``,
which resolves the name again. :class:`SocketHookHTTPSConnection` overrides that one method and
hands the work to a public-named hook, :meth:`~SocketHookHTTPSConnection.open_socket`, so the rest
of ``backend.net`` uses only urllib3's public API (``host``, ``port``, ``timeout``,
``socket_options``, ``Timeout.DEFAULT_TIMEOUT``).

urllib3 is pinned in requirements.txt to :data:`URLLIB3_VERSION`;
tests/net/test_urllib3_internals.py fails when the installed or pinned version differs from it,
or when ``connect()`` no longer goes through ``_new_conn()``. Re-check this module before
changing the pin.
"""

from __future__ import annotations

import socket

from urllib3.connection import HTTPSConnection

# The urllib3 release whose HTTPConnection.connect() -> _new_conn() contract this module was checked against.
URLLIB3_VERSION = "2.8.0"


class SocketHookHTTPSConnection(HTTPSConnection):
    """An HTTPS connection whose TCP socket comes from :meth:`open_socket` (TLS is set up on it as usual)."""

    def open_socket(self) -> socket.socket:
        """Open and return the connected TCP socket for this connection; subclasses decide where to."""
        raise NotImplementedError

    def _new_conn(self) -> socket.socket:
        # urllib3's private hook: connect() takes the socket from here, then wraps it in TLS
        # (verified against self.host, the name, not the address the socket went to).
        return self.open_socket()
