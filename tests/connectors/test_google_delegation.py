"""Google Workspace domain-wide delegation: the fake's JWT grant answers as Google does, and the real connector.

The first tests post assertions to the fake's token endpoint as any client would; the others run
``DelegatedTokens`` (google-auth's ``with_subject``), the Workspace directory and the console's
check against it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from backend.connectors import MailboxContext, MailboxSecrets, open_mailbox
from backend.connectors.google.delegation import (
    DELEGATED_SCOPES,
    KEY_REFUSED,
    NO_USER,
    NOT_AUTHORISED,
    SECRET_KEY,
    DelegatedTokens,
    DelegationRefused,
    ServiceAccountKey,
    delegation_refused,
    parse_key,
)
from backend.connectors.google.directory import WorkspaceDirectory, check_delegation
from backend.errors import AuthRevoked, SetupFailed
from backend.net.outbound import make_session
from sandbox.google_delegation import (
    BAD_SIGNATURE,
    JWT_BEARER,
    SHORT_LIVED,
    UNAUTHORIZED,
    UNKNOWN_USER,
    new_service_account_key,
)
from sandbox.harness.gmail import ADDRESS, GmailHarness
from sandbox.harness.graph import DictSecretStore
from sandbox.tls import CertPair, TestCA

DOMAIN = ADDRESS.split("@")[1]
SA_EMAIL = "sidebar-sync@acme-project.iam.gserviceaccount.com"
CLIENT_ID = "104851234567890123456"


@pytest.fixture
def h(ca: TestCA, server_cert: CertPair) -> Iterator[GmailHarness]:
    """The Gmail harness; its Workspace's admin authorised our service account for the two scopes."""
    harness = GmailHarness(server_cert, ca.ca_path)
    harness.google.delegation.domains.add(DOMAIN)
    harness.google.authorise_delegation(CLIENT_ID, DELEGATED_SCOPES)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture
def key_file(h: GmailHarness) -> dict[str, str]:
    """The service account's JSON key, as the Cloud console downloads it."""
    return new_service_account_key(h.google.delegation, SA_EMAIL, CLIENT_ID)


@pytest.fixture
def key(key_file: dict[str, str]) -> ServiceAccountKey:
    """The checked key."""
    return parse_key(json.dumps(key_file))


@pytest.fixture
def session(h: GmailHarness) -> Iterator[requests.Session]:
    """Our outbound session (the test CA trusted)."""
    s = make_session(h.settings.OUTBOUND_CA_BUNDLE, h.settings.OUTBOUND_TIMEOUT_SECONDS)
    yield s
    s.close()


def assertion(h: GmailHarness, key_file: dict[str, str], **changes: Any) -> str:
    """An assertion as google-auth signs it, with ``changes`` to its claims (``_pem``/``_kid`` to its signing)."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": SA_EMAIL, "sub": ADDRESS, "scope": " ".join(DELEGATED_SCOPES),
                              "aud": f"{h.server.url}/token", "iat": now, "exp": now + 3600}
    pem = changes.pop("_pem", key_file["private_key"])
    kid = changes.pop("_kid", key_file["private_key_id"])
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, pem, algorithm="RS256",
                      headers={"kid": kid})


def grant(h: GmailHarness, signed: str) -> requests.Response:
    """POST the JWT grant to the fake's token endpoint."""
    return requests.post(f"{h.server.url}/token", data={"grant_type": JWT_BEARER, "assertion": signed},
                         verify=h.ca_path, timeout=10)


def _other_pem() -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()).decode()


def test_the_fake_gives_a_token_that_reads_that_persons_gmail(h: GmailHarness, key_file: dict[str, str]) -> None:
    answer = grant(h, assertion(h, key_file))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    profile = requests.get(f"{h.server.url}/gmail/v1/users/me/profile", verify=h.ca_path, timeout=10,
                           headers={"Authorization": f"Bearer {body['access_token']}"})
    assert profile.status_code == 200 and profile.json()["emailAddress"] == ADDRESS


@pytest.mark.parametrize(("changes", "status", "error", "description"), [
    ({"_kid": "0123456789abcdef"}, 400, "invalid_grant", BAD_SIGNATURE),
    ({"_pem": "other"}, 400, "invalid_grant", BAD_SIGNATURE),
    ({"iss": "someone-else@x.iam.gserviceaccount.com"}, 400, "invalid_grant", BAD_SIGNATURE),
    ({"exp": int(time.time()) + 7200}, 400, "invalid_grant", SHORT_LIVED),
    ({"aud": "https://attacker.example/token"}, 400, "invalid_grant", "Invalid JWT: Failed audience check."),
    ({"scope": "https://mail.google.com/"}, 401, "unauthorized_client", UNAUTHORIZED),
    ({"sub": f"nobody@{DOMAIN}"}, 400, "invalid_grant", UNKNOWN_USER),
    ({"sub": "someone@outside.example"}, 400, "invalid_grant", UNKNOWN_USER),
])
def test_the_fake_refuses_bad_grants_as_google_does(h: GmailHarness, key_file: dict[str, str],
                                                    changes: dict[str, Any], status: int, error: str,
                                                    description: str) -> None:
    h.google.add_user("someone@outside.example")
    if changes.get("_pem") == "other":
        changes["_pem"] = _other_pem()
    answer = grant(h, assertion(h, key_file, **changes))
    assert (answer.status_code, answer.json()) == (status, {"error": error, "error_description": description})


def test_a_revoked_key_or_a_withdrawn_delegation_is_refused(h: GmailHarness, key_file: dict[str, str]) -> None:
    h.google.authorise_delegation(CLIENT_ID, [])
    assert grant(h, assertion(h, key_file)).json()["error"] == "unauthorized_client"
    h.google.revoke_key(key_file["private_key_id"])
    assert grant(h, assertion(h, key_file)).json() == {"error": "invalid_grant", "error_description": BAD_SIGNATURE}


def test_tokens_are_signed_as_the_person_and_sent_to_our_token_url(h: GmailHarness, key: ServiceAccountKey,
                                                                   session: requests.Session) -> None:
    # The key file names Google's real token URL; the token comes from ours (no internet here).
    assert "oauth2.googleapis.com" in json.dumps(new_service_account_key(h.google.delegation, "x@y.example", "1" * 12))
    token = DelegatedTokens(h.settings, key, ADDRESS.upper(), session).access_token()
    info = h.google.token_info(f"Bearer {token}")
    assert info is not None and info.email == ADDRESS and info.scopes == frozenset(DELEGATED_SCOPES)
    (claims,) = h.google.delegation.grants
    assert claims == {"iss": SA_EMAIL, "sub": ADDRESS, "scope": " ".join(DELEGATED_SCOPES),
                      "aud": "https://oauth2.googleapis.com/token"}
    assert h.google.token_requests == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]  # sent to our token URL


@pytest.mark.parametrize(("breakage", "reason", "org_wide"), [
    ("revoke", KEY_REFUSED, True), ("unauthorise", NOT_AUTHORISED, True), ("no_user", NO_USER, False)])
def test_refusals_become_domain_errors(h: GmailHarness, key: ServiceAccountKey, session: requests.Session,
                                       breakage: str, reason: str, org_wide: bool) -> None:
    subject = ADDRESS
    if breakage == "revoke":
        h.google.revoke_key(SA_EMAIL)
    elif breakage == "unauthorise":
        h.google.authorise_delegation(CLIENT_ID, [DELEGATED_SCOPES[0]])
    else:
        subject = f"gone@{DOMAIN}"
    with pytest.raises(DelegationRefused) as caught:
        DelegatedTokens(h.settings, key, subject, session).access_token()
    assert isinstance(caught.value, AuthRevoked)
    assert caught.value.reason == reason and caught.value.org_wide is org_wide
    assert key.info["private_key"] not in caught.value.message
    refused = delegation_refused(h.settings, key, subject, session)
    assert (refused is not None) is org_wide


def _key_without(key_file: dict[str, str], name: str) -> str:
    return json.dumps({k: v for k, v in key_file.items() if k != name})


BAD_KEYS: list[tuple[str, Any]] = [
    ("not json", "{oops"),
    ("a list", "[1, 2]"),
    ("too large", "x" * 9000),
    ("wrong type", {"type": "authorized_user"}),
    ("no client_email", "client_email"),
    ("no client_id", "client_id"),
    ("no private_key", "private_key"),
    ("no private_key_id", "private_key_id"),
    ("bad client_email", {"client_email": "not an address"}),
    ("bad client_id", {"client_id": "abc.apps.googleusercontent.com"}),
    ("bad pem", {"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}),
    ("small rsa key", {"private_key": "small"}),
]


@pytest.mark.parametrize(("label", "change"), BAD_KEYS, ids=[b[0] for b in BAD_KEYS])
def test_bad_keys_are_refused_before_anything_is_sent(key_file: dict[str, str], label: str, change: Any) -> None:
    if isinstance(change, dict):
        if change.get("private_key") == "small":
            small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the weak key the check refuses
            change = {"private_key": small.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()).decode()}
        raw: Any = json.dumps({**key_file, **change})
    elif change in key_file:
        raw = _key_without(key_file, change)
    else:
        raw = change
    with pytest.raises(SetupFailed) as caught:
        parse_key(raw)
    assert caught.value.code == "invalid_key" and not caught.value.credentials_sent
    assert key_file["private_key"] not in caught.value.message


def test_a_good_key_keeps_only_what_signing_needs(key_file: dict[str, str]) -> None:
    parsed = parse_key({**key_file, "token_uri": "https://attacker.example/token", "universe_domain": "evil.example"})
    assert (parsed.client_email, parsed.client_id) == (SA_EMAIL, CLIENT_ID)
    assert "token_uri" not in parsed.info and "universe_domain" not in parsed.info
    assert parsed.info["private_key"] not in repr(parsed)


def test_a_delegated_sync_mailbox_is_read_with_the_orgs_key(h: GmailHarness, key: ServiceAccountKey) -> None:
    h.add_email("inbox", subject="Quote", sender="carol@customer.example", to=[ADDRESS])
    ctx = MailboxContext(settings=h.settings, mailbox_id="mbx-dwd", address=ADDRESS,
                         connection={"delegated": True, "client_id": CLIENT_ID},
                         secrets=MailboxSecrets(DictSecretStore(), "mbx-dwd"),
                         org_secret=lambda name: key.text() if name == SECRET_KEY else None)
    connector = open_mailbox("google", ctx)
    try:
        assert connector.identity().primary == ADDRESS
    finally:
        connector.close()  # type: ignore[attr-defined]
    assert [g["sub"] for g in h.google.delegation.grants] == [ADDRESS]
    no_key = MailboxContext(settings=h.settings, mailbox_id="mbx-dwd", address=ADDRESS,
                            connection={"delegated": True}, secrets=MailboxSecrets(DictSecretStore(), "mbx-dwd"),
                            org_secret=lambda name: None)
    with pytest.raises(AuthRevoked):
        open_mailbox("google", no_key)


def test_the_directory_says_what_google_says_of_each_address(h: GmailHarness, key: ServiceAccountKey) -> None:
    h.google.add_user(f"off@{DOMAIN}").gmail_enabled = False
    h.google.add_user(f"renamed.new@{DOMAIN}")
    h.google.delegation.nicknames[f"renamed@{DOMAIN}"] = f"renamed.new@{DOMAIN}"
    h.google.add_user("elsewhere@outside.example")
    directory = WorkspaceDirectory(h.settings, key, [DOMAIN])
    try:
        found = directory.find([ADDRESS, "R.EP@" + DOMAIN, f"nobody@{DOMAIN}", f"off@{DOMAIN}",
                                f"renamed@{DOMAIN}", "elsewhere@outside.example"])
    finally:
        directory.close()
    assert {a: f.status for a, f in found.items()} == {
        ADDRESS: "found", f"r.ep@{DOMAIN}": "found", f"nobody@{DOMAIN}": "missing", f"off@{DOMAIN}": "forbidden",
        f"renamed@{DOMAIN}": "mismatch", "elsewhere@outside.example": "forbidden"}
    assert found[ADDRESS].identity is not None and found[ADDRESS].identity.matches(f"sales@{DOMAIN}")


def test_the_directory_raises_when_the_orgs_key_is_refused(h: GmailHarness, key: ServiceAccountKey) -> None:
    h.google.revoke_key(SA_EMAIL)
    directory = WorkspaceDirectory(h.settings, key, [DOMAIN])
    with pytest.raises(DelegationRefused):
        directory.find([ADDRESS])
    directory.close()


@pytest.mark.parametrize(("setup", "address", "code"), [
    ("", "nobody@" + DOMAIN, NO_USER), ("", "x@outside.example", "address_outside_domain"),
    ("revoke", ADDRESS, "key_refused"), ("unauthorise", ADDRESS, NOT_AUTHORISED),
    ("off", ADDRESS, "gmail_disabled"), ("nickname", f"renamed@{DOMAIN}", "mailbox_mismatch")])
def test_the_consoles_check_says_why_it_failed(h: GmailHarness, key: ServiceAccountKey, setup: str, address: str,
                                               code: str) -> None:
    if setup == "revoke":
        h.google.revoke_key(SA_EMAIL)
    elif setup == "unauthorise":
        h.google.authorise_delegation(CLIENT_ID, [])
    elif setup == "off":
        h.user.gmail_enabled = False
    elif setup == "nickname":
        h.google.delegation.nicknames[address] = ADDRESS
    with pytest.raises(SetupFailed) as caught:
        check_delegation(h.settings, key, [DOMAIN], address)
    assert caught.value.code == code, caught.value.message
    if code == NOT_AUTHORISED:
        assert CLIENT_ID in caught.value.message and DELEGATED_SCOPES[1] in caught.value.message


def test_the_consoles_check_passes_for_a_delegated_mailbox(h: GmailHarness, key: ServiceAccountKey) -> None:
    assert check_delegation(h.settings, key, [DOMAIN], ADDRESS).primary == ADDRESS
