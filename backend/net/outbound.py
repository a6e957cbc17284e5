"""Outbound HTTPS: one way to build a requests session that trusts the right CAs and times out.

Every connector (Salesforce, Microsoft identity and Graph, Google, EWS) builds its sessions here.
Two things the defaults of ``requests`` get wrong for us:

* ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` in the environment silently override
  ``session.verify``; :class:`OutboundSession` re-applies our trust after requests merges the
  environment, so ``OUTBOUND_CA_BUNDLE`` (a private Exchange CA, or the tests' CA) always counts.
* requests has no default timeout: :class:`TimeoutAdapter` gives every request one.
* Handed a bundle path, urllib3 builds a TLS context and loads the bundle for every new
  connection (about 200 loads, most of a Graph backfill's CPU): :class:`SharedTlsMixin` gives every
  pool the process's one context per bundle (:func:`tls_context`) instead.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import ssl
import stat
import tempfile
import threading
from typing import Any
from urllib.parse import urlsplit

import certifi
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.ssl_ import create_urllib3_context

from backend.observability.metrics import record_outbound

_bundle_lock = threading.Lock()
_bundles: dict[str, str] = {}
_contexts: dict[str, ssl.SSLContext] = {}
# host[:port] -> service, for the outside-call metrics: our configured endpoints (register_services),
# then the public suffixes; whatever else is "other".
_service_hosts: dict[str, str] = {}
_SERVICE_SUFFIXES = (
    ("graph.microsoft.com", "graph"), ("login.microsoftonline.com", "microsoft_identity"),
    ("salesforce.com", "salesforce"), ("force.com", "salesforce"),
    ("googleapis.com", "google"), ("google.com", "google"),
)


def register_services(urls: dict[str, str]) -> None:
    """Name the service of each configured endpoint ``{url: service}`` for the outside-call metrics."""
    for url, service in urls.items():
        netloc = urlsplit(url).netloc.lower()
        if netloc:
            _service_hosts[netloc] = service


def service_of(url: str) -> str:
    """Which outside service a request URL goes to (a bounded label: never the host itself)."""
    parts = urlsplit(url)
    known = _service_hosts.get(parts.netloc.lower())
    if known:
        return known
    host = (parts.hostname or "").lower()
    for suffix, service in _SERVICE_SUFFIXES:
        if host == suffix or host.endswith("." + suffix):
            return service
    return "other"


def trust_bundle(extra_ca_file: str) -> str | bool:
    """Path of a CA file with the public roots plus ``extra_ca_file``; True (public roots) when empty."""
    if not extra_ca_file:
        return certifi.where()
    with _bundle_lock:
        with open(extra_ca_file, "rb") as fh:
            extra = fh.read()
        with open(certifi.where(), "rb") as fh:
            public = fh.read()
        # "Extra" means in addition to the public roots: Salesforce and Microsoft stay reachable
        # while a private Exchange CA is trusted too.
        content = public.rstrip(b"\n") + b"\n" + extra
        digest = hashlib.sha256(content).hexdigest()[:16]
        cached = _bundles.get(digest)
        if cached and os.path.exists(cached):
            return cached
        # One file per content in a directory only we can write to: every process (RQ forks a
        # work-horse per job) reuses it instead of leaving a file behind, and no other local user
        # can plant a CA of theirs under the name we read.
        directory = _private_dir()
        path = os.path.join(directory, f"ca-{digest}.pem")
        if not _holds(path, content):
            fd, tmp = tempfile.mkstemp(prefix="ca-", suffix=".tmp", dir=directory)
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.replace(tmp, path)
        _bundles[digest] = path
        return path


def _holds(path: str, content: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read() == content
    except OSError:
        return False


def _private_dir() -> str:
    """A directory of this user's, mode 0700 (created once; a foreign or open one is never used)."""
    uid = os.getuid()
    path = os.path.join(tempfile.gettempdir(), f"sidebar-sync-{uid}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077:
        return path
    # Someone else made it first (or opened it up): a fresh private one, for this process's tree.
    fallback = tempfile.mkdtemp(prefix="sidebar-sync-")
    atexit.register(shutil.rmtree, fallback, True)
    return fallback


def tls_context(bundle: str) -> ssl.SSLContext:
    """The process's one TLS client context trusting the CA file ``bundle`` (built on first use)."""
    with _bundle_lock:
        context = _contexts.get(bundle)
        if context is None:
            # As urllib3 builds its own (same options, hostname checked), but once per process.
            context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
            context.load_verify_locations(cafile=bundle)
            _contexts[bundle] = context
        return context


# Trust bundle files this process has seen: requests looks at the bundle path up to three times a
# request (exists, isdir, twice): each a system call that lets the GIL go, per Graph page.
_bundle_files: set[str] = set()


def _is_bundle_file(path: str) -> bool:
    """True when ``path`` is a CA file (not a directory); checked on the disk once per path and process."""
    if path in _bundle_files:
        return True
    if os.path.isfile(path):
        _bundle_files.add(path)
        return True
    return False


class SharedTlsMixin(HTTPAdapter):
    """Pools get the process's shared TLS context for a bundle path instead of the path itself.

    Every outside call passes :meth:`send` here, so it is counted here, once (service, status class).
    """

    # The service every request of this adapter goes to; empty: told by the request's host.
    service: str = ""

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        """Send, counting the call by service and status class (an exception counts as ``error``)."""
        service = self.service or service_of(str(request.url))
        try:
            response = super().send(request, *args, **kwargs)
        except Exception:
            record_outbound(service, None)
            raise
        record_outbound(service, response.status_code)
        return response

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> Any:  # requests' (host params, pool kwargs) pair; its TypedDicts are not public
        """requests' pool key, with ``ca_certs`` turned into the shared ``ssl_context`` (requests' documented hook)."""
        if isinstance(verify, str) and _is_bundle_file(verify):
            # As for ``verify=True`` (certificates required), with the bundle's shared context.
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, cert)
            pool_kwargs["ssl_context"] = tls_context(verify)
            return host_params, pool_kwargs
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        bundle = pool_kwargs.pop("ca_certs", None)
        if bundle:
            pool_kwargs["ssl_context"] = tls_context(bundle)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """As requests does, but leave the bundle to the pool's context (a path would be loaded per connection)."""
        if isinstance(verify, str) and not cert and url.lower().startswith("https") and _is_bundle_file(verify):
            conn.cert_reqs = "CERT_REQUIRED"
            conn.ca_certs = None
            return
        super().cert_verify(conn, url, verify, cert)
        if isinstance(verify, str) and not os.path.isdir(verify) and getattr(conn, "ca_certs", None) == verify:
            conn.ca_certs = None


class TimeoutAdapter(SharedTlsMixin):
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
    """A session whose ``verify`` the environment cannot override, reading proxies from it once per host.

    requests' ``trust_env`` scans the whole environment and looks for ``~/.netrc`` on every request
    (a tenth of a Graph backfill's reader CPU); here it is off, so netrc credentials never ride on
    our calls, and the environment's proxies (``HTTPS_PROXY``, ``NO_PROXY``) are read once per host.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self._env_proxies: dict[str, dict[str, str]] = {}

    def _proxies_for(self, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self._env_proxies.get(origin)
        if found is None:
            if len(self._env_proxies) >= 256:
                self._env_proxies.clear()
            found = requests.utils.get_environ_proxies(origin)
            self._env_proxies[origin] = found
        return found

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """Merge as requests does with ``trust_env`` (the env's proxies); env CA variables never win over ours."""
        text = url.decode("utf-8") if isinstance(url, bytes) else str(url or "")
        proxies = requests.sessions.merge_setting(proxies, self._proxies_for(text))
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
