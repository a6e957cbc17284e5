"""Local sandbox services for development: the protocol-level fakes, seeded with demo data.

``scripts/dev`` starts them when no Salesforce credentials are configured, so a newcomer can open
the task pane and log in without any account. They are the same fakes the tests use; only the
ports are fixed and the data is a demo.
"""

from __future__ import annotations

from tests.fakes import microsoft as fake_ms
from tests.fakes import salesforce as fake_sf
from tests.fakes.server import FakeServer
from tests.fakes.tls import CertPair

SALESFORCE_PORT = 3001
MICROSOFT_PORT = 3002
DEMO_USER = "demo@sidebar-sync.example"
DEMO_PASSWORD = "demo"


class Sandbox:
    """The sandbox services on fixed localhost ports."""

    def __init__(self, cert_path: str, key_path: str) -> None:
        self.cert = CertPair(cert_path, key_path)
        self.salesforce = fake_sf.FakeSalesforceState()
        self.salesforce.add_user(DEMO_USER, DEMO_PASSWORD, email=DEMO_USER, name="Demo User", is_admin=True)
        self.microsoft = fake_ms.FakeMicrosoftState()
        self.servers: list[FakeServer] = []

    def start(self) -> Sandbox:
        """Start every service."""
        for state, factory, port in (
            (self.salesforce, fake_sf.create_app, SALESFORCE_PORT),
            (self.microsoft, fake_ms.create_app, MICROSOFT_PORT),
        ):
            server = FakeServer(factory(state), self.cert, port=port).start()  # type: ignore[arg-type]
            state.base_url = f"https://localhost:{port}"
            self.servers.append(server)
        return self

    def settings(self) -> dict[str, str]:
        """Environment for the app so it uses the sandbox."""
        return {
            "SALESFORCE_CLIENT_ID": self.salesforce.client_id,
            "SALESFORCE_CLIENT_SECRET": self.salesforce.client_secret,
            "SALESFORCE_LOGIN_URL": f"https://localhost:{SALESFORCE_PORT}",
            "SALESFORCE_SANDBOX_URL": f"https://localhost:{SALESFORCE_PORT}",
            "SALESFORCE_ALLOWED_HOSTS": f"localhost:{SALESFORCE_PORT}",
            "MS_CLIENT_ID": self.microsoft.client_id,
            "MS_CLIENT_SECRET": self.microsoft.client_secret,
            "MS_AUTHORITY": f"https://localhost:{MICROSOFT_PORT}/organizations",
        }

    def describe(self) -> list[str]:
        """Lines telling a developer what runs where and how to log in."""
        return [
            f"Salesforce  https://localhost:{SALESFORCE_PORT}  log in as {DEMO_USER} / {DEMO_PASSWORD}",
            f"Microsoft   https://localhost:{MICROSOFT_PORT}  (identity platform)",
        ]

    def stop(self) -> None:
        """Stop every service."""
        for server in self.servers:
            server.stop()
        self.servers.clear()
