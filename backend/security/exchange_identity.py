"""Exchange identity tokens (``getUserIdentityTokenAsync``, on-premises Exchange), validated as Microsoft documents.

The token is a JWT signed by the Exchange server with a key published in its *authentication metadata
document*, whose URL the token itself names (``appctx.amurl``). Checks, cheapest first, so an
obviously bad token costs no outbound request:

1. Header: ``alg`` is ``RS256`` (nothing else, so no algorithm confusion) and ``x5t`` (the signing
   certificate's thumbprint) is present.
2. Claims: ``appctx`` (a JSON string) holds ``version == "ExIdTok.V1"``, an https ``amurl`` and a
   ``msexchuid``; ``aud`` is a page of this add-in (an https URL on ``PUBLIC_BASE_URL``'s origin, under
   its path: the manifest's ``SourceLocation``); the current time is within ``nbf``..``exp`` (with a
   little clock skew; Exchange sends them as strings) and the lifetime is at most a day.
3. The ``amurl`` host must belong to the claimed mailbox's organisation. Microsoft's guidance is to
   match it against the user's Autodiscover domain; we accept a host equal to the mailbox's domain
   or under it (``mail.contoso.com`` for ``alice@contoso.com``), or one an administrator lists in
   ``EXCHANGE_IDENTITY_HOSTS``. Without this, anyone could run a "metadata document" for keys of
   their own and vouch for any address: the token names no SMTP address, so binding the issuing
   server to the address's domain is what ties the proof to the claim.
4. The metadata document is fetched through the outbound host guard (``amurl`` is a user-supplied
   URL: https only, no private or metadata addresses unless ``EWS_ALLOWED_HOSTS`` admits them),
   bounded in size and time, and cached per URL; the key whose ``keyinfo.x5t`` matches the header
   (and whose certificate really has that thumbprint and is in its validity period) verifies the
   signature.

The result is ``VerifiedMailbox(kind="exchange", identity="exchange:{msexchuid}", tenant_id=<amurl host>)``.
Microsoft suggests msexchuid + amurl as the unique key; Exchange's msexchuid already carries the
server name (``guid@host``) and the amurl host is kept in ``tenant_id``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from cryptography import x509

from backend.config import Settings
from backend.outbound import trust_bundle
from backend.security.identity import CLOCK_SKEW_SECONDS, ProofInvalid, VerifiedMailbox
from backend.security.ssrf import HostGuard, HostNotAllowed, HostRule, Resolver, guarded_session

VERSION = "ExIdTok.V1"
MAX_LIFETIME_SECONDS = 24 * 3600
METADATA_CACHE_SECONDS = 6 * 3600
# An x5t we have not seen triggers at most one refetch of a metadata document per this many seconds.
METADATA_MIN_REFETCH_SECONDS = 60
MAX_METADATA_BYTES = 256 * 1024
MAX_CACHED_DOCUMENTS = 256


def _x5t(der: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324 - x5t is SHA-1


def _epoch(value: Any, name: str) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise ProofInvalid(f"The identity token's {name} is not a time.") from None


class ExchangeIdentityVerifier:
    """Checks Exchange identity tokens (see the module docstring); one instance per app, thread-safe."""

    def __init__(self, settings: Settings, resolver: Resolver | None = None) -> None:
        self.settings = settings
        self.guard = HostGuard(settings.EWS_ALLOWED_HOSTS, resolver=resolver)
        self.issuer_hosts = tuple(HostRule.parse(p) for p in settings.EXCHANGE_IDENTITY_HOSTS)
        self.verify_tls = trust_bundle(settings.OUTBOUND_CA_BUNDLE)
        self._lock = threading.Lock()
        # amurl -> (fetched at, {x5t: certificate})
        self._documents: dict[str, tuple[float, dict[str, x509.Certificate]]] = {}
        self.fetches = 0

    def verify(self, token: str, claimed: str) -> VerifiedMailbox:
        """The verified mailbox for ``claimed``, or ProofInvalid."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise ProofInvalid("The identity token is not a JWT.") from None
        if header.get("alg") != "RS256" or not header.get("x5t"):
            raise ProofInvalid("The identity token uses an unexpected signature algorithm or key reference.")
        appctx = claims.get("appctx")
        if isinstance(appctx, str):
            try:
                appctx = json.loads(appctx)
            except ValueError:
                appctx = None
        if not isinstance(appctx, dict):
            raise ProofInvalid("The identity token has no Exchange application context.")
        if appctx.get("version") != VERSION:
            raise ProofInvalid("The identity token is not an Exchange identity token of a supported version.")
        msexchuid = str(appctx.get("msexchuid") or "").strip()
        amurl = str(appctx.get("amurl") or "").strip()
        if not msexchuid or not amurl:
            raise ProofInvalid("The identity token lacks the Exchange user id or its metadata URL.")
        self._check_audience(claims.get("aud"))
        self._check_lifetime(claims)
        amurl_host = self._check_issuer_host(amurl, claimed)
        key = self._signing_key(amurl, str(header["x5t"]))
        try:
            jwt.decode(token, key.public_key(), algorithms=["RS256"],  # type: ignore[arg-type]
                       options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                "verify_iat": False, "verify_iss": False})
        except jwt.InvalidSignatureError:
            raise ProofInvalid("The identity token's signature is not valid.") from None
        except jwt.PyJWTError as exc:
            raise ProofInvalid(f"The identity token is not valid ({type(exc).__name__}).") from None
        return VerifiedMailbox(address=claimed.strip().lower(), identity=f"exchange:{msexchuid}", kind="exchange",
                               tenant_id=amurl_host)

    def _check_audience(self, aud: Any) -> None:
        base = urlsplit(self.settings.PUBLIC_BASE_URL)
        values = aud if isinstance(aud, list) else [aud]
        for value in values:
            try:
                parts = urlsplit(str(value or ""))
            except ValueError:
                continue
            if (parts.scheme == "https" and parts.netloc.lower() == base.netloc.lower()
                    and parts.path.startswith(base.path.rstrip("/") + "/")):
                return
        raise ProofInvalid("The identity token was issued for another add-in.")

    @staticmethod
    def _check_lifetime(claims: dict[str, Any]) -> None:
        if "nbf" not in claims or "exp" not in claims:
            raise ProofInvalid("The identity token has no validity period.")
        nbf, exp = _epoch(claims["nbf"], "start"), _epoch(claims["exp"], "expiry")
        now = time.time()
        if exp - nbf > MAX_LIFETIME_SECONDS or exp <= nbf:
            raise ProofInvalid("The identity token's validity period is not plausible.")
        if now > exp + CLOCK_SKEW_SECONDS:
            raise ProofInvalid("The identity token has expired.")
        if now < nbf - CLOCK_SKEW_SECONDS:
            raise ProofInvalid("The identity token is not valid yet.")

    def _check_issuer_host(self, amurl: str, claimed: str) -> str:
        try:
            parts = urlsplit(amurl)
            port = parts.port or 443
        except ValueError:
            raise ProofInvalid("The identity token's metadata URL is not valid.") from None
        host = (parts.hostname or "").lower().rstrip(".")
        if parts.scheme != "https" or not host:
            raise ProofInvalid("The identity token's metadata URL is not https.")
        domain = claimed.strip().lower().rpartition("@")[2]
        in_domain = bool(domain) and (host == domain or host.endswith("." + domain))
        if not in_domain and not any(rule.admits(host, port) for rule in self.issuer_hosts):
            raise ProofInvalid("The identity token was issued by a server outside this mailbox's organisation.")
        return host

    def _signing_key(self, amurl: str, x5t: str) -> x509.Certificate:
        with self._lock:
            cached = self._documents.get(amurl)
        now = time.time()
        if cached is not None:
            fetched_at, keys = cached
            fresh = now - fetched_at < METADATA_CACHE_SECONDS
            if x5t in keys and fresh:
                return keys[x5t]
            if fresh and now - fetched_at < METADATA_MIN_REFETCH_SECONDS:
                raise ProofInvalid("The identity token is signed with a key its server does not publish.")
        keys = self._fetch(amurl)
        with self._lock:
            if len(self._documents) >= MAX_CACHED_DOCUMENTS:
                self._documents.pop(next(iter(self._documents)))
            self._documents[amurl] = (now, keys)
        if x5t not in keys:
            raise ProofInvalid("The identity token is signed with a key its server does not publish.")
        return keys[x5t]

    def _fetch(self, amurl: str) -> dict[str, x509.Certificate]:
        """The signing certificates of a metadata document, by thumbprint."""
        self.fetches += 1
        session = guarded_session(self.guard, verify=self.verify_tls,
                                  timeout=float(self.settings.OUTBOUND_TIMEOUT_SECONDS))
        try:
            self.guard.check(amurl)
            response = session.get(amurl, allow_redirects=False, stream=True,
                                   headers={"Accept": "application/json"})
            data = b""
            for chunk in response.iter_content(65536):
                data += chunk
                if len(data) > MAX_METADATA_BYTES:
                    raise ProofInvalid("The Exchange metadata document is too large.", "identity_unavailable")
            response.close()
        except HostNotAllowed:
            raise ProofInvalid("The identity token's metadata URL points to an address that is not allowed.") from None
        except (requests.RequestException, OSError) as exc:
            raise ProofInvalid(f"The Exchange server's signing keys could not be loaded ({type(exc).__name__}).",
                               "identity_unavailable") from None
        finally:
            session.close()
        if response.status_code != 200:
            raise ProofInvalid(f"The Exchange server's signing keys could not be loaded (HTTP {response.status_code}).",
                               "identity_unavailable")
        try:
            document = json.loads(data.decode("utf-8"))
            entries = document["keys"]
        except (ValueError, KeyError, TypeError):
            raise ProofInvalid("The Exchange metadata document is not valid.", "identity_unavailable") from None
        keys: dict[str, x509.Certificate] = {}
        now = datetime.now(UTC)
        for entry in entries if isinstance(entries, list) else []:
            try:
                if entry.get("usage", "signing") != "signing":
                    continue
                value = entry["keyvalue"]
                if value.get("type") != "x509Certificate":
                    continue
                der = base64.b64decode(value["value"])
                cert = x509.load_der_x509_certificate(der)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            declared = str((entry.get("keyinfo") or {}).get("x5t") or "")
            if declared != _x5t(der):
                continue  # the published thumbprint must be this certificate's
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                continue
            keys[declared] = cert
        return keys
