"""Outbound HTTPS: one way to build a requests session that trusts the right CAs and times out.

Every connector (Salesforce, Microsoft identity and Graph, Google, EWS) builds its sessions here.
Two things the defaults of ``requests`` get wrong for us:

* ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` in the environment silently override
  ``session.verify``; :class:`OutboundSession` re-applies our trust after requests merges the
  environment, so ``OUTBOUND_CA_BUNDLE`` (a private Exchange CA, or the tests' CA) always counts.
* requests has no default timeout: :class:`TimeoutAdapter` gives every request one.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import tempfile
import threading
from typing import Any

import certifi
import requests
from requests.adapters import HTTPAdapter

_bundle_lock = threading.Lock()
_bundles: dict[str, str] = {}


def trust_bundle(extra_ca_file: str) -> str | bool:
    """Path of a CA file with the public roots plus ``extra_ca_file``; True (public roots) when empty."""
    if not extra_ca_file:
        return certifi.where()
    with _bundle_lock:
        with open(extra_ca_file, "rb") as fh:
            extra = fh.read()
        with open(certifi.where(), "rb") as fh:
            public = fh.read()
        digest = hashlib.sha256(public + extra).hexdigest()[:16]
        if digest in _bundles and os.path.exists(_bundles[digest]):
            return _bundles[digest]
        # "Extra" means in addition to the public roots: Salesforce and Microsoft stay reachable
        # while a private Exchange CA is trusted too.
        # A file of this process's own (created exclusively, mode 0600): a predictable shared
        # name could be planted by another local user to make us trust their CA.
        fd, path = tempfile.mkstemp(prefix=f"sidebar-sync-ca-{digest}-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(public.rstrip(b"\n") + b"\n" + extra)
        atexit.register(_remove_quietly, path)
        _bundles[digest] = path
        return path


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


class TimeoutAdapter(HTTPAdapter):
    """An adapter that applies a default (connect, read) timeout to every request."""

    def __init__(self, timeout: float, **kwargs: Any) -> None:
        self.default_timeout = (min(10.0, timeout), timeout)
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """Send with the default timeout unless the caller gave one."""
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().send(request, **kwargs)


class OutboundSession(requests.Session):
    """A session whose ``verify`` the environment cannot override."""

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """Merge as requests does, then put our trust back (env CA variables must not win)."""
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None or verify is True:
            settings["verify"] = self.verify
        return settings


def make_session(extra_ca_file: str = "", timeout: float = 20.0, user_agent: str = "SidebarSync/1") -> OutboundSession:
    """A requests session that trusts the public roots plus ``extra_ca_file`` and times out."""
    session = OutboundSession()
    session.verify = trust_bundle(extra_ca_file)
    adapter = TimeoutAdapter(timeout)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    return session
