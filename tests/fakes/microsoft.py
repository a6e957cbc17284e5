"""A fake Microsoft identity platform at the wire protocol: OpenID configuration, JWKS, tokens.

Served on loopback https; the product reaches it only through ``MS_AUTHORITY``. The URL layout
follows Entra ID: ``{origin}/{tenant}/v2.0/.well-known/openid-configuration``,
``{origin}/{tenant}/discovery/v2.0/keys``, ``{origin}/{tenant}/oauth2/v2.0/token`` and issuer
``{origin}/{tid}/v2.0``.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify
from jwt.algorithms import RSAAlgorithm


@dataclass
class SigningKey:
    """An RSA key published in the JWKS (or not, to test unknown keys)."""

    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public JWK."""
        data: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        data.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return data


def new_key(kid: str | None = None) -> SigningKey:
    """A fresh 2048-bit signing key."""
    return SigningKey(kid or uuid.uuid4().hex[:16], rsa.generate_private_key(public_exponent=65537, key_size=2048))


@dataclass
class FakeMicrosoftState:
    """Keys, tenants and users of the fake identity platform."""

    client_id: str = "11111111-2222-3333-4444-555555555555"
    client_secret: str = "ms-test-secret"
    keys: list[SigningKey] = field(default_factory=lambda: [new_key("test-key-1")])
    base_url: str = ""
    lock: threading.RLock = field(default_factory=threading.RLock)

    def issuer(self, tid: str) -> str:
        """The v2.0 issuer for a tenant."""
        return f"{self.base_url}/{tid}/v2.0"

    def mint(self, claims: dict[str, Any], key: SigningKey | None = None, headers: dict[str, Any] | None = None) -> str:
        """Sign ``claims`` as an access token (RS256) with a published key unless told otherwise."""
        signing = key or self.keys[0]
        return jwt.encode(claims, signing.private, algorithm="RS256", headers={"kid": signing.kid, **(headers or {})})

    def naa_token(
        self,
        email: str,
        tid: str = "tenant-contoso",
        oid: str | None = None,
        audience: str | None = None,
        lifetime: int = 3600,
        scp: str = "access_as_user",
        **overrides: Any,
    ) -> str:
        """An access token for our API as Nested App Authentication would hand the task pane."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience or self.client_id,
            "iss": self.issuer(tid),
            "iat": now - 5,
            "nbf": now - 5,
            "exp": now + lifetime,
            "tid": tid,
            "oid": oid or str(uuid.uuid5(uuid.NAMESPACE_URL, email)),
            "preferred_username": email,
            "upn": email,
            "name": email.split("@")[0],
            "scp": scp,
            "ver": "2.0",
            "azp": self.client_id,
        }
        claims.update(overrides)
        return self.mint(claims)


def create_app(state: FakeMicrosoftState) -> Flask:
    """The fake's Flask app."""
    app = Flask("fake_microsoft")

    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant: str) -> Any:
        base = state.base_url
        return jsonify({
            "issuer": f"{base}/{{tenantid}}/v2.0" if tenant in {"organizations", "common"} else state.issuer(tenant),
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": None,
        })

    @app.get("/<tenant>/discovery/v2.0/keys")
    def jwks(tenant: str) -> Any:
        with state.lock:
            return jsonify({"keys": [k.jwk() for k in state.keys]})

    return app
