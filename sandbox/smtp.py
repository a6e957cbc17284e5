"""A local SMTP sink (aiosmtpd) that captures every message, for notification tests.

The product reaches it only through ``SMTP_URL`` (``smtp://127.0.0.1:<port>``), exactly as it
reaches a real relay.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from sandbox.redis_server import free_port
from sandbox.tls import CertPair

SMTP_USER = "relay-user"
SMTP_PASSWORD = "relay-p@ss:word"


@dataclass
class Captured:
    """One message the sink accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class SmtpSink:
    """The sink's captured messages; ``url`` is what SMTP_URL should be."""

    host: str
    port: int
    messages: list[Captured] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    credentials: tuple[str, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """SMTP_URL for this sink (with the credentials it requires, URL-encoded)."""
        if self.credentials:
            from urllib.parse import quote

            user, password = (quote(v, safe="") for v in self.credentials)
            return f"smtp://{user}:{password}@{self.host}:{self.port}"
        return f"smtp://{self.host}:{self.port}"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        """Accept only the configured credentials (aiosmtpd allows AUTH only after STARTTLS)."""
        ok = isinstance(data, LoginPassword) and self.credentials is not None and (
            data.login.decode(), data.password.decode()) == self.credentials
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Capture a message."""
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(Captured(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Captured]:
        """Wait until at least ``count`` messages arrived; returns all of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            return list(self.messages)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A running SMTP sink on loopback."""
    sink = SmtpSink("127.0.0.1", free_port())
    controller = Controller(sink, hostname=sink.host, port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink_tls(server_cert: CertPair) -> Iterator[SmtpSink]:
    """A sink that requires STARTTLS (the test CA's certificate) and a login."""
    sink = SmtpSink("127.0.0.1", free_port(), credentials=(SMTP_USER, SMTP_PASSWORD))
    controller = Controller(sink, hostname=sink.host, port=sink.port, tls_context=server_cert.server_context(),
                            require_starttls=True, auth_required=True, authenticator=sink.authenticate)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
