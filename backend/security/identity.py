"""Add-in identity proofs: who is the mailbox the add-in runs in?

The task pane sends ``Office.context.mailbox.userProfile.emailAddress`` (a claim) and, where the
host offers one, a proof:

* Microsoft 365: a Nested App Authentication access token for our API, validated here against the
  tenant's signing keys (JWKS from the authority's OpenID configuration), issuer, audience,
  expiry, scope and tenant.
* On-premises Exchange: an Exchange identity token (see ``backend.security.exchange_identity``).

A proof only verifies the mailbox when it names the same address as the claim.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
import requests

from backend.config import Settings
from backend.net.outbound import make_session

log = logging.getLogger(__name__)

CLOCK_SKEW_SECONDS = 120
JWKS_CACHE_SECONDS = 6 * 3600
# A key id we have never seen triggers at most one JWKS refetch per this many seconds.
JWKS_MIN_REFETCH_SECONDS = 60


class ProofInvalid(Exception):
    """The identity proof is not acceptable; the message says why (no token content)."""

    def __init__(self, message: str, code: str = "mailbox_proof_invalid") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VerifiedMailbox:
    """A mailbox address proven by the host, and the stable identity behind it."""

    address: str
    identity: str  # "naa:{tid}:{oid}" or "exchange:{amurl host}:{port}/{msexchuid}"
    kind: str  # "naa" or "exchange"
    tenant_id: str = ""
    # False when the proof is genuine but ties the user only to the organisation, not yet to this
    # address (an Exchange identity token before its user connected the mailbox with its password).
    confirmed: bool = True
    # The raw proof, kept in memory only for an on-behalf-of exchange during this request.
    assertion: str = ""


class ProofVerifier(Protocol):
    """Checks one kind of identity proof."""

    def verify(self, token: str, claimed: str) -> VerifiedMailbox:
        """The verified mailbox, or ProofInvalid."""
        ...


class _Jwks:
    """OpenID configuration and signing keys of one authority, cached in memory."""

    def __init__(self, authority: str, session: requests.Session) -> None:
        self.authority = authority
        self.session = session
        self.lock = threading.Lock()
        self.issuer_template = ""
        self.keys: dict[str, Any] = {}
        self.fetched_at = 0.0

    def _load(self) -> None:
        try:
            config = self.session.get(f"{self.authority}/v2.0/.well-known/openid-configuration").json()
            jwks = self.session.get(config["jwks_uri"]).json()
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise ProofInvalid(
                f"The Microsoft sign-in keys could not be loaded ({type(exc).__name__}).", "identity_unavailable"
            ) from None
        keys: dict[str, Any] = {}
        try:
            for jwk in jwks.get("keys", []):
                if isinstance(jwk, dict) and jwk.get("kty") == "RSA" and jwk.get("kid"):
                    keys[str(jwk["kid"])] = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(jwk))
        except (AttributeError, TypeError, ValueError, jwt.PyJWTError):
            raise ProofInvalid("The Microsoft sign-in keys are malformed.", "identity_unavailable") from None
        self.issuer_template = str(config.get("issuer", ""))
        self.keys = keys
        self.fetched_at = time.time()

    def key(self, kid: str) -> Any:
        with self.lock:
            stale = time.time() - self.fetched_at > JWKS_CACHE_SECONDS
            unknown = kid not in self.keys and time.time() - self.fetched_at > JWKS_MIN_REFETCH_SECONDS
            if stale or unknown or not self.keys:
                self._load()
            if kid not in self.keys:
                raise ProofInvalid("The token is signed with a key Microsoft does not publish.")
            return self.keys[kid]

    def issuer_for(self, tid: str) -> str:
        with self.lock:
            if not self.issuer_template:
                self._load()
            return self.issuer_template.replace("{tenantid}", tid)


class NaaVerifier:
    """Validates Nested App Authentication access tokens for our API."""

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)
        self.jwks = _Jwks(settings.MS_AUTHORITY, self.session)

    @property
    def audiences(self) -> list[str]:
        """Accepted ``aud`` values: our API's application id URI and the client id."""
        return [a for a in (self.settings.MS_API_AUDIENCE, self.settings.MS_CLIENT_ID) if a]

    def verify(self, token: str, claimed: str) -> VerifiedMailbox:
        """Check the token and that it names ``claimed``; raise ProofInvalid otherwise."""
        if not self.audiences:
            raise ProofInvalid("Microsoft sign-in is not configured on this server.", "identity_unavailable")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, RecursionError):  # RecursionError: a header nested too deep
            raise ProofInvalid("The identity token is not a JWT.") from None
        if header.get("alg") != "RS256" or not header.get("kid"):
            raise ProofInvalid("The identity token uses an unexpected signature algorithm.")
        key = self.jwks.key(str(header["kid"]))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audiences,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "iss", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise ProofInvalid("The identity token has expired.") from None
        except jwt.InvalidAudienceError:
            raise ProofInvalid("The identity token was issued for another application.") from None
        except jwt.InvalidSignatureError:
            raise ProofInvalid("The identity token's signature is not valid.") from None
        except jwt.PyJWTError as exc:
            raise ProofInvalid(f"The identity token is not valid ({type(exc).__name__}).") from None
        tid = str(claims.get("tid", ""))
        if claims.get("iss") != self.jwks.issuer_for(tid):
            raise ProofInvalid("The identity token was issued by another authority or tenant.")
        if self.settings.MS_ALLOWED_TENANTS and tid not in self.settings.MS_ALLOWED_TENANTS:
            raise ProofInvalid("Your organisation's Microsoft tenant is not allowed to use this add-in.",
                               "tenant_not_allowed")
        scopes = str(claims.get("scp", "")).split()
        if self.settings.MS_API_SCOPE not in scopes:
            raise ProofInvalid("The identity token lacks the scope for this add-in.")
        # Only the sign-in names the tenant's directory controls; "email" can be set to anything by a
        # tenant admin and is not proof of a mailbox (the "nOAuth" pattern).
        names = {
            str(claims.get(c, "")).strip().lower()
            for c in ("preferred_username", "upn")
            if claims.get(c)
        }
        if claimed.strip().lower() not in names:
            raise ProofInvalid("The identity token belongs to another mailbox than the one the add-in reports.",
                               "mailbox_mismatch")
        return VerifiedMailbox(
            address=claimed.strip().lower(),
            identity=f"naa:{tid}:{claims.get('oid', '')}",
            kind="naa",
            tenant_id=tid,
            assertion=token,
        )


def is_exchange_identity_token(token: str) -> bool:
    """True when a JWT carries the ``appctx`` claim of an Exchange identity token."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, RecursionError):
        return False
    return "appctx" in claims
