"""The outside systems' clients, each built once from the settings in ``create_app``.

As Warehouse builds its email sender from settings, every client here is constructed from
:class:`~backend.config.Settings` alone, so a test points one at a fake by configuration
(``SALESFORCE_LOGIN_URL``, ``MS_AUTHORITY``, ...) and never by patching. The edges (views, job
entry points, the CLI) take them from ``services().clients`` and hand them down as arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backend.config import Settings
from backend.connectors.google import GoogleAuth
from backend.connectors.google.push import PushVerifier
from backend.connectors.graph import MicrosoftAuth
from backend.connectors.salesforce import JwtBearer, SalesforceOAuth
from backend.net import Resolver
from backend.net.outbound import register_services
from backend.security.exchange_identity import ExchangeIdentityVerifier
from backend.security.identity import NaaVerifier, ProofVerifier


@dataclass
class Clients:
    """One client per outside system the web and worker processes talk to."""

    salesforce_oauth: SalesforceOAuth
    microsoft_auth: MicrosoftAuth
    google_auth: GoogleAuth
    naa_verifier: ProofVerifier
    exchange_verifier: ProofVerifier
    # None: the system resolver. A test or a deployment with split DNS may give its own.
    dns_resolver: Resolver | None = None
    # None: the real connectors. Tests of the engine give a connector of their own here
    # (``(provider, MailboxContext) -> Mailbox``, ``(User, on_usage) -> Crm``).
    mailbox_factory: Callable[[str, Any], Any] | None = None
    crm_factory: Callable[[Any, Any], Any] | None = None
    # Checks Gmail's Pub/Sub pushes (their OIDC token); None: built on first use.
    pubsub_verifier: PushVerifier | None = None
    # Signs mass-activated people in to Salesforce (JWT bearer flow); unconfigured without SALESFORCE_JWT_PRIVATE_KEY.
    salesforce_jwt: JwtBearer | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Clients:
        """Build every client from the settings."""
        register_services({
            settings.SALESFORCE_LOGIN_URL: "salesforce", settings.SALESFORCE_SANDBOX_URL: "salesforce",
            settings.MS_AUTHORITY: "microsoft_identity", settings.GRAPH_URL: "graph",
            settings.GOOGLE_TOKEN_URL: "google", settings.GMAIL_API_URL: "google",
            settings.GOOGLE_CALENDAR_API_URL: "google", settings.GOOGLE_CERTS_URL: "google",
        })
        salesforce_oauth = SalesforceOAuth(settings)
        return cls(
            salesforce_oauth=salesforce_oauth,
            salesforce_jwt=JwtBearer(settings, salesforce_oauth),
            microsoft_auth=MicrosoftAuth(settings),
            google_auth=GoogleAuth(settings),
            naa_verifier=NaaVerifier(settings),
            exchange_verifier=ExchangeIdentityVerifier(settings),
            pubsub_verifier=PushVerifier(settings),
        )
