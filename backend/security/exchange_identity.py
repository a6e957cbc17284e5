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
   ``EXCHANGE_IDENTITY_HOSTS`` for that domain. Without this, anyone could run a "metadata document" for keys of
   their own and vouch for any address: the token names no SMTP address, so binding the issuing
   server to the address's domain is what ties the proof to the claim.
4. The metadata document is fetched through the outbound host guard (``amurl`` is a user-supplied
   URL: https only, no private or metadata addresses unless ``EWS_ALLOWED_HOSTS`` admits them);
   the key whose ``keyinfo.x5t`` matches the header (and whose certificate really has that
   thumbprint and is in its validity period) verifies the signature.

The fetch happens before anyone is signed in, to a server the token names, so it must not let a
hostile server hold a web thread: the whole fetch (name lookup, connect, TLS, headers and body)
has a hard deadline of a few seconds (``METADATA_DEADLINE_SECONDS``, at most
``OUTBOUND_TIMEOUT_SECONDS``): the outbound guard cuts the connection when it passes, however
slowly the server drips bytes. The body is capped at ``MAX_METADATA_BYTES``. Documents are cached
per ``amurl`` for hours and failures for a minute, one fetch per ``amurl`` runs at a time (others
wait for its result), and at most ``MAX_CONCURRENT_FETCHES`` fetches run at once in a process
(beyond that: ``identity_unavailable``, try again). Whatever the document holds, a malformed one
is a ``ProofInvalid``, never a server error.

The result is ``VerifiedMailbox(kind="exchange", identity="exchange:{amurl host}:{port}/{msexchuid}",
tenant_id=<amurl host>)``: Microsoft's unique key is msexchuid with the amurl, so the same msexchuid
from another issuing server is another identity. ``EXCHANGE_IDENTITY_HOSTS`` entries are
``host-pattern=domain|domain``: a listed issuer vouches only for those mail domains.

What this proves is an Exchange user of the claimed address's organisation: the token names no
address. ``backend.security.proofs`` therefore counts it as proof of the address only once that
user id connected this mailbox with its password on a server that speaks for the token's issuer
(``server_speaks_for``: the same rule, ``IssuerHosts``; ``POST /api/sync/exchange`` records the tie);
before that the login stands and ``GET /api/me`` reports the mailbox as unverified.
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
from backend.config.syntax import parse_identity_host
from backend.net.adapter import guarded_session
from backend.net.deadline import RequestBudget
from backend.net.guard import HostGuard, HostNotAllowed
from backend.net.hosts import HostRule
from backend.net.outbound import trust_bundle
from backend.net.resolve import Resolver
from backend.security.identity import CLOCK_SKEW_SECONDS, ProofInvalid, VerifiedMailbox

VERSION = "ExIdTok.V1"
MAX_LIFETIME_SECONDS = 24 * 3600
METADATA_CACHE_SECONDS = 6 * 3600
# An x5t we have not seen triggers at most one refetch of a metadata document per this many seconds.
METADATA_MIN_REFETCH_SECONDS = 60
MAX_METADATA_BYTES = 256 * 1024
MAX_CACHED_DOCUMENTS = 256
# The whole metadata fetch, whatever the server does (capped by OUTBOUND_TIMEOUT_SECONDS).
METADATA_DEADLINE_SECONDS = 5.0
# A failed fetch is remembered this long: repeated tokens naming a dead or hostile amurl cost nothing.
METADATA_FAILURE_CACHE_SECONDS = 60
MAX_CONCURRENT_FETCHES = 8
MAX_KEYS_PER_DOCUMENT = 32
# Fetches of one amurl are serialised through one of these locks (by hash), so a burst of tokens
# naming the same document makes one request, not one each.
_FLIGHT_STRIPES = 64


class IssuerHosts:
    """Which servers speak for a mail domain's Exchange users: the one rule for a token's issuer
    (``amurl``) and for the EWS server whose password check binds that token to addresses."""

    def __init__(self, entries: tuple[str, ...] | list[str]) -> None:
        # Each listed issuer with the mail domains it may vouch for (not every domain: issue 18).
        self.listed = tuple((HostRule.parse(pattern), domains) for pattern, domains in
                            (parse_identity_host(entry) for entry in entries))

    def admits(self, host: str, port: int, address: str) -> bool:
        """Whether ``host:port`` is under ``address``'s domain or listed for it in EXCHANGE_IDENTITY_HOSTS."""
        host = host.lower().rstrip(".")
        domain = address.strip().lower().rpartition("@")[2].rstrip(".")
        if not domain or not host:
            return False
        if host == domain or host.endswith("." + domain):
            return True
        return any(rule.admits(host, port) and any(domain == d or domain.endswith("." + d) for d in domains)
                   for rule, domains in self.listed)


def identity_issuer(identity: str) -> tuple[str, int] | None:
    """The issuing server (host, port) an ``exchange:{host}:{port}/{msexchuid}`` identity names, else None."""
    if not identity.startswith("exchange:"):
        return None
    hostport = identity.removeprefix("exchange:").partition("/")[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.lower(), int(port)


def server_speaks_for(issuers: IssuerHosts, identity: str, server_url: str, address: str) -> bool:
    """Whether the server at ``server_url`` may tie ``identity`` (a verified token's) to ``address``.

    A password a server accepted proves the address only to that server: it speaks for the token's
    user only when it is the token's issuer itself (same host and port: another port is another
    server) or passes the issuer rule for the address's domain. Otherwise a server the caller chose
    could say "this is Alice" for anyone's genuine token.
    """
    issuer = identity_issuer(identity)
    try:
        parts = urlsplit(server_url)
        host, port = (parts.hostname or "").lower().rstrip("."), parts.port or 443
    except ValueError:
        return False
    if issuer is None or parts.scheme != "https" or not host:
        return False
    return (host, port) == issuer or issuers.admits(host, port, address)


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
        self.issuers = IssuerHosts(settings.EXCHANGE_IDENTITY_HOSTS)
        self.verify_tls = trust_bundle(settings.OUTBOUND_CA_BUNDLE)
        self.deadline_seconds = min(METADATA_DEADLINE_SECONDS, float(settings.OUTBOUND_TIMEOUT_SECONDS))
        self._lock = threading.Lock()
        # amurl -> (fetched at, {x5t: certificate})
        self._documents: dict[str, tuple[float, dict[str, x509.Certificate]]] = {}
        # amurl -> (failed at, message, code)
        self._failures: dict[str, tuple[float, str, str]] = {}
        self._flights = tuple(threading.Lock() for _ in range(_FLIGHT_STRIPES))
        self._fetch_slots = threading.BoundedSemaphore(MAX_CONCURRENT_FETCHES)
        self.fetches = 0

    def verify(self, token: str, claimed: str) -> VerifiedMailbox:
        """The verified mailbox for ``claimed``, or ProofInvalid."""
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, RecursionError):  # RecursionError: JSON nested too deep
            raise ProofInvalid("The identity token is not a JWT.") from None
        if header.get("alg") != "RS256" or not header.get("x5t"):
            raise ProofInvalid("The identity token uses an unexpected signature algorithm or key reference.")
        appctx = claims.get("appctx")
        if isinstance(appctx, str):
            try:
                appctx = json.loads(appctx)
            except (ValueError, RecursionError):
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
        amurl_host, amurl_port = self._check_issuer_host(amurl, claimed)
        key = self._signing_key(amurl, str(header["x5t"]))
        try:
            jwt.decode(token, key.public_key(), algorithms=["RS256"],  # type: ignore[arg-type]
                       options={"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                "verify_iat": False, "verify_iss": False})
        except jwt.InvalidSignatureError:
            raise ProofInvalid("The identity token's signature is not valid.") from None
        except jwt.PyJWTError as exc:
            raise ProofInvalid(f"The identity token is not valid ({type(exc).__name__}).") from None
        # Keyed on the issuing server and the user id, as Microsoft advises: another server (even
        # one trusted for this domain) naming the same msexchuid is not the same user.
        identity = f"exchange:{amurl_host}:{amurl_port}/{msexchuid}"
        return VerifiedMailbox(address=claimed.strip().lower(), identity=identity, kind="exchange",
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

    def _check_issuer_host(self, amurl: str, claimed: str) -> tuple[str, int]:
        try:
            parts = urlsplit(amurl)
            port = parts.port or 443
        except ValueError:
            raise ProofInvalid("The identity token's metadata URL is not valid.") from None
        host = (parts.hostname or "").lower().rstrip(".")
        if parts.scheme != "https" or not host:
            raise ProofInvalid("The identity token's metadata URL is not https.")
        if not self.issuers.admits(host, port, claimed):
            raise ProofInvalid("The identity token was issued by a server outside this mailbox's organisation.")
        return host, port

    def _cached(self, amurl: str, x5t: str) -> x509.Certificate | None:
        """The key from a fresh cached document; ProofInvalid for a cached failure or an unpublished key
        seen recently; None when the document must be (re)fetched."""
        now = time.time()
        with self._lock:
            cached = self._documents.get(amurl)
            failed = self._failures.get(amurl)
        fetched_at, keys = cached if cached is not None else (0.0, {})
        fresh = now - fetched_at < METADATA_CACHE_SECONDS
        if x5t in keys and fresh:
            # Checked first: a failed refetch (say, for some token's unknown x5t) must not block the
            # keys we already hold.
            return keys[x5t]
        if failed is not None and now - failed[0] < METADATA_FAILURE_CACHE_SECONDS:
            raise ProofInvalid(failed[1], failed[2])
        if cached is None:
            return None
        if fresh and now - fetched_at < METADATA_MIN_REFETCH_SECONDS:
            raise ProofInvalid("The identity token is signed with a key its server does not publish.")
        return None

    def _signing_key(self, amurl: str, x5t: str) -> x509.Certificate:
        key = self._cached(amurl, x5t)
        if key is not None:
            return key
        flight = self._flights[hash(amurl) % _FLIGHT_STRIPES]
        # Whoever holds the lock fetches within the deadline; waiting longer means something is wrong.
        if not flight.acquire(timeout=self.deadline_seconds + 1):
            raise ProofInvalid("The Exchange server's signing keys are being loaded; try again.",
                               "identity_unavailable")
        try:
            key = self._cached(amurl, x5t)  # another request may have fetched it while we waited
            if key is not None:
                return key
            keys = self._fetch_and_remember(amurl)
        finally:
            flight.release()
        if x5t not in keys:
            raise ProofInvalid("The identity token is signed with a key its server does not publish.")
        return keys[x5t]

    def _fetch_and_remember(self, amurl: str) -> dict[str, x509.Certificate]:
        if not self._fetch_slots.acquire(blocking=False):
            raise ProofInvalid("Too many Exchange servers are being asked for their keys; try again.",
                               "identity_unavailable")
        try:
            keys = self._fetch(amurl)
        except ProofInvalid as exc:
            self._remember(self._failures, amurl, (time.time(), str(exc), exc.code))
            raise
        finally:
            self._fetch_slots.release()
        self._remember(self._documents, amurl, (time.time(), keys))
        with self._lock:
            self._failures.pop(amurl, None)
        return keys

    def _remember(self, cache: dict[str, Any], amurl: str, value: Any) -> None:
        with self._lock:
            cache.pop(amurl, None)
            if len(cache) >= MAX_CACHED_DOCUMENTS:
                cache.pop(next(iter(cache)))
            cache[amurl] = value

    def _fetch(self, amurl: str) -> dict[str, x509.Certificate]:
        """The signing certificates of a metadata document, by thumbprint (ProofInvalid otherwise)."""
        self.fetches += 1
        # One deadline for everything (DNS, connect, TLS, headers, body): the guard cuts the
        # connection when it passes, so a server dripping a byte at a time cannot hold us.
        budget = RequestBudget(deadline=time.monotonic() + self.deadline_seconds)
        session = guarded_session(self.guard, verify=self.verify_tls, timeout=self.deadline_seconds, budget=budget)
        too_large = ProofInvalid("The Exchange metadata document is too large.", "identity_unavailable")
        try:
            self.guard.check(amurl, timeout=self.deadline_seconds)
            response = session.get(amurl, allow_redirects=False, stream=True,
                                   headers={"Accept": "application/json"})
            try:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > MAX_METADATA_BYTES:
                    raise too_large
                data = bytearray()
                for chunk in response.iter_content(65536):
                    data += chunk
                    if len(data) > MAX_METADATA_BYTES:
                        raise too_large
            finally:
                response.close()
        except HostNotAllowed:
            raise ProofInvalid("The identity token's metadata URL points to an address that is not allowed.") from None
        except (requests.RequestException, OSError) as exc:
            if budget.timed_out():
                raise ProofInvalid("The Exchange server did not send its signing keys in time.",
                                   "identity_unavailable") from None
            raise ProofInvalid(f"The Exchange server's signing keys could not be loaded ({type(exc).__name__}).",
                               "identity_unavailable") from None
        finally:
            session.close()
        if response.status_code != 200:
            raise ProofInvalid(f"The Exchange server's signing keys could not be loaded (HTTP {response.status_code}).",
                               "identity_unavailable")
        try:
            return _signing_keys(bytes(data))
        except ProofInvalid:
            raise
        except Exception:  # noqa: BLE001 - whatever a hostile document holds, the answer is "not valid"
            raise ProofInvalid("The Exchange metadata document is not valid.", "identity_unavailable") from None


def _signing_keys(data: bytes) -> dict[str, x509.Certificate]:
    """The currently valid signing certificates a metadata document publishes, by thumbprint."""
    invalid = ProofInvalid("The Exchange metadata document is not valid.", "identity_unavailable")
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        raise invalid from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise invalid
    keys: dict[str, x509.Certificate] = {}
    now = datetime.now(UTC)
    for entry in entries[:MAX_KEYS_PER_DOCUMENT]:
        # Each field is checked for its type: the document comes from a server the token chose.
        if not isinstance(entry, dict) or entry.get("usage", "signing") != "signing":
            continue
        keyinfo, value = entry.get("keyinfo"), entry.get("keyvalue")
        if not isinstance(keyinfo, dict) or not isinstance(value, dict) or value.get("type") != "x509Certificate":
            continue
        declared, encoded = keyinfo.get("x5t"), value.get("value")
        if not isinstance(declared, str) or not isinstance(encoded, str):
            continue
        try:
            der = base64.b64decode(encoded)
            cert = x509.load_der_x509_certificate(der)
            valid_now = cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
        except ValueError:
            continue
        if declared != _x5t(der):
            continue  # the published thumbprint must be this certificate's
        if valid_now:
            keys[declared] = cert
    return keys
