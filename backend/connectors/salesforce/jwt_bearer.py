"""Salesforce sign-in without the person: the OAuth 2.0 JWT bearer flow for mass-activated people.

The server signs an assertion (RS256, the key of ``SALESFORCE_JWT_PRIVATE_KEY`` whose certificate is
uploaded to the connected app) naming the person's Salesforce username, and trades it for an access
token. There is no refresh token: a new assertion is signed whenever the access token is refused.
Records written with that token are created by that person (owner and "Created By" right).

Vendor answers become domain errors here: a person no administrator pre-authorised is
:class:`NotPreauthorized`; an inactive or unknown user :class:`AuthRevoked`; a refused assertion
(wrong certificate, wrong consumer key) :class:`ServiceMisconfigured`, since no person can fix it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from backend.config import ConfigError, Settings
from backend.connectors.salesforce.credentials import SalesforceCredentials
from backend.connectors.salesforce.hosts import LoginHostRefused, check_salesforce_url
from backend.connectors.salesforce.oauth import SalesforceOAuth, TokenSet, token_set
from backend.errors import AuthRevoked, NotPreauthorized, ServiceMisconfigured, Unavailable

log = logging.getLogger(__name__)

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Salesforce refuses assertions whose exp is more than three minutes away.
ASSERTION_LIFETIME_SECONDS = 170


def private_key_pem(value: str) -> str:
    """PEM text from ``SALESFORCE_JWT_PRIVATE_KEY``: inline (``\\n`` escapes allowed) or a file path; "" if unset."""
    if not value:
        return ""
    if value.lstrip().startswith("-----BEGIN"):
        return value.replace("\\n", "\n")
    try:
        with open(value, encoding="ascii") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        raise ConfigError("SALESFORCE_JWT_PRIVATE_KEY names a file that cannot be read.") from None


def assertion(client_id: str, key: Any, username: str, audience: str, now: float | None = None) -> str:
    """A signed JWT bearer assertion: iss = consumer key, sub = username, aud = login host, exp <= 3 min."""
    issued = int(now if now is not None else time.time())
    claims = {"iss": client_id, "sub": username, "aud": audience, "exp": issued + ASSERTION_LIFETIME_SECONDS}
    return jwt.encode(claims, key, algorithm="RS256")


class JwtBearer:
    """Signs people in through the JWT bearer flow with the server's key (built once from the settings)."""

    def __init__(self, settings: Settings, oauth: SalesforceOAuth) -> None:
        pem = private_key_pem(settings.SALESFORCE_JWT_PRIVATE_KEY)
        try:
            self._key = load_pem_private_key(pem.encode("ascii"), password=None) if pem else None
        except (ValueError, TypeError):
            # Checked when the app is built: a bad key stops the web and worker processes at start.
            raise ConfigError("SALESFORCE_JWT_PRIVATE_KEY is not an unencrypted PEM private key.") from None
        self.settings = settings
        self.oauth = oauth
        # Assertions traded (the bench and tests count them).
        self.grants = 0

    @property
    def configured(self) -> bool:
        """True when a key is set (mass activation is possible)."""
        return self._key is not None

    def audience(self, login_url: str) -> str:
        """The ``aud`` claim: the org's login host (production, sandbox or My Domain) as an origin."""
        return login_url.rstrip("/")

    def token(self, login_url: str, username: str) -> TokenSet:
        """An access token for ``username`` (no refresh token comes with it)."""
        if self._key is None:
            raise ServiceMisconfigured("SALESFORCE_JWT_PRIVATE_KEY is not set, so people cannot be signed in "
                                       "without their own login.")
        signed = assertion(self.settings.SALESFORCE_CLIENT_ID, self._key, username, self.audience(login_url))
        try:
            resp = self.oauth.session.post(f"{login_url}/services/oauth2/token",
                                           data={"grant_type": GRANT_TYPE, "assertion": signed})
        except requests.RequestException as exc:
            raise Unavailable(f"Salesforce could not be reached ({type(exc).__name__}).") from None
        self.grants += 1
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if resp.status_code == 200 and body.get("access_token"):
            tokens = token_set(body)
            try:
                check_salesforce_url(self.settings, tokens.instance_url)
            except LoginHostRefused as exc:
                raise AuthRevoked(f"Salesforce answered with an instance outside Salesforce ({exc}).") from None
            return tokens
        raise _refusal(resp.status_code, str(body.get("error", "")), str(body.get("error_description", ""))[:200])


def _refusal(status: int, error: str, description: str) -> Exception:
    """The domain error for a refused JWT bearer grant."""
    lowered = description.lower()
    if status >= 500:
        return Unavailable(f"Salesforce's token endpoint answered {status}.")
    if error == "invalid_grant" and "approved" in lowered:
        return NotPreauthorized("Salesforce has not pre-authorised this person for Sidebar Sync (user hasn't "
                                "approved this consumer): add them to the connected app's permission set.")
    if error in {"invalid_grant", "inactive_user", "inactive_org"} and ("user" in lowered or error != "invalid_grant"):
        return AuthRevoked(f"Salesforce refused to sign this person in ({error}: {description}).")
    log.error("salesforce refused our JWT bearer assertion: %s %s", error, description)
    return ServiceMisconfigured(f"Salesforce refused this server's signed assertion ({error}: {description}); "
                                "check the connected app's certificate and consumer key.")


class JwtCredentials(SalesforceCredentials):
    """A mass-activated person's Salesforce session: a new JWT bearer assertion whenever it is refused."""

    def __init__(self, bearer: JwtBearer, secrets_store: Any, uid: str, username: str, login_url: str,
                 instance_url: str) -> None:
        super().__init__(bearer.oauth, secrets_store, uid, login_url, instance_url)
        self.bearer = bearer
        self.username = username

    def refresh(self) -> str:
        """Sign a new assertion and trade it for an access token (cached encrypted like any other)."""
        tokens = self.bearer.token(self.login_url, self.username)
        self.refreshes += 1
        self.store_tokens(tokens)
        return tokens.access_token
