"""backend.net.urllib3_internals: fails loudly when the pinned urllib3 changes underneath the guard."""

from __future__ import annotations

import inspect
import re
import socket
from pathlib import Path

import pytest
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.util import Timeout
from urllib3.util import timeout as timeout_module

from backend.net import urllib3_internals
from backend.net.urllib3_internals import URLLIB3_VERSION, SocketHookHTTPSConnection

REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


def _pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==([^\s;#]+)", REQUIREMENTS.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{package} is not pinned in requirements.txt"
    return match.group(1)


def test_the_installed_and_pinned_urllib3_are_the_one_the_module_was_checked_against() -> None:
    # A different urllib3 may have moved the private hook: re-read urllib3_internals, then bump URLLIB3_VERSION.
    assert _pinned("urllib3") == URLLIB3_VERSION
    assert urllib3.__version__ == URLLIB3_VERSION


def test_new_conn_is_still_the_private_hook_with_the_expected_signature() -> None:
    hook = HTTPConnection.__dict__.get("_new_conn")
    assert callable(hook), "urllib3.connection.HTTPConnection._new_conn is gone"
    assert list(inspect.signature(hook).parameters) == ["self"]
    assert "_new_conn" not in HTTPSConnection.__dict__  # HTTPS inherits the plain hook, then wraps in TLS
    # connect() is what takes the socket from the hook (the HTTPS connect() of this release).
    assert "self._new_conn()" in inspect.getsource(HTTPSConnection.connect)


class _Sentinel(Exception):
    pass


def test_connect_takes_its_socket_from_open_socket() -> None:
    class Probe(SocketHookHTTPSConnection):
        def open_socket(self) -> socket.socket:
            raise _Sentinel(self.host, self.port)

    with pytest.raises(_Sentinel) as caught:
        Probe("pinned.example.", 8443).connect()  # no name lookup, no socket: only our hook runs
    assert caught.value.args == ("pinned.example", 8443)  # ``host`` drops the trailing dot


def test_the_base_hook_must_be_overridden() -> None:
    with pytest.raises(NotImplementedError):
        SocketHookHTTPSConnection("pinned.example", 443).connect()


def test_the_public_default_timeout_is_the_sentinel_connections_carry() -> None:
    # adapter.py compares a connection's timeout with Timeout.DEFAULT_TIMEOUT (public) instead of
    # importing urllib3.util.timeout._DEFAULT_TIMEOUT; both must stay the same object.
    assert Timeout.DEFAULT_TIMEOUT is timeout_module._DEFAULT_TIMEOUT
    # (urllib3 resolves the sentinel to the socket default when a connection is made.)
    assert HTTPSConnection("pinned.example", 443).timeout == socket.getdefaulttimeout()


def test_no_other_module_of_backend_net_touches_urllib3_internals() -> None:
    # Private names of requests/urllib3/ssl (``from x._y import``, ``x._name``) stay in urllib3_internals.
    package = Path(urllib3_internals.__file__).parent
    pattern = re.compile(r"from (urllib3|requests|ssl)\S*\._|import _|(urllib3|requests|ssl)\S*\._[a-z]"
                         r"|_new_conn|_dns_host")
    offenders = [f"{path.name}:{number}"
                 for path in sorted(package.glob("*.py")) if path.name != "urllib3_internals.py"
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                 if pattern.search(line)]
    assert offenders == []
