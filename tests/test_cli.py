"""``flask keys rotate``: every stored secret and meeting key re-encrypted under the new key; users stay logged in."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet
from flask.testing import FlaskClient

from backend import create_app
from backend.extensions import services
from backend.security.crypto import SecretBox
from sandbox.https_client import HttpsClient
from sandbox.login import login
from sandbox.tls import TestCA
from tests.conftest import RunningFake


def _secret_values(client: redis.Redis) -> dict[str, str]:
    return {k: str(client.get(k)) for k in client.scan_iter(match="sstest:secret:*")}


def test_keys_rotate_reencrypts_and_the_user_stays_logged_in(
    client: FlaskClient, ca: TestCA, app_config: dict[str, Any], redis_client: redis.Redis,
    fake_salesforce: RunningFake,
) -> None:
    who = login(client, ca.ca_path)
    old_key = app_config["ENCRYPTION_KEYS"]
    before = _secret_values(redis_client)
    assert len(before) == 2  # the refresh token and the cached access token

    new_key = Fernet.generate_key().decode()
    rotating = create_app({**app_config, "ENCRYPTION_KEYS": f"{new_key},{old_key}"})
    result = rotating.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 2 secret(s)" in result.output

    after = _secret_values(redis_client)
    new_only = SecretBox([new_key])
    for key, token in after.items():
        assert token != before[key]
        new_only.decrypt(token)  # readable with the new key alone

    # The old key can now be dropped: the pane keeps working, refresh included.
    fresh = create_app({**app_config, "ENCRYPTION_KEYS": new_key})
    fresh.test_client_class = HttpsClient
    pane = fresh.test_client()
    fake_salesforce.state.expire_access_tokens()
    redis_client.delete(*redis_client.keys("sstest:once:salesforce-check:*"))
    resp = pane.get("/api/me", headers=who.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert fake_salesforce.state.token_requests[-1] == "refresh_token"


def test_keys_rotate_reports_unreadable_secrets(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    redis_client.set("sstest:secret:user:u1:sf_refresh", SecretBox([Fernet.generate_key().decode()]).encrypt("x"))
    result = create_app(app_config).test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 1
    assert "1 secret(s) could not be decrypted" in result.output


def test_keys_generate_prints_a_valid_key(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    result = create_app(app_config).test_cli_runner().invoke(args=["keys", "generate"])
    SecretBox([result.output.strip()])


def test_a_dropped_key_is_a_configuration_error_not_a_logout(
    client: FlaskClient, ca: TestCA, app_config: dict[str, Any], redis_client: redis.Redis
) -> None:
    # Was: a dropped key sent the user back to login, deleting the secrets (issue 18 item 4).
    who = login(client, ca.ca_path)
    redis_client.delete(*redis_client.keys("sstest:once:salesforce-check:*"))
    before = _secret_values(redis_client)
    wrong = create_app({**app_config, "ENCRYPTION_KEYS": Fernet.generate_key().decode()})
    wrong.test_client_class = HttpsClient
    resp = wrong.test_client().get("/api/me", headers=who.headers)
    assert resp.status_code == 503
    assert resp.json is not None and resp.json["error"]["code"] == "server_misconfigured"
    assert _secret_values(redis_client) == before
    assert client.get("/api/me", headers=who.headers).status_code == 200  # the right keys: still logged in


ORG = "00D000000000001EAA"  # a valid 18-character id (its suffix checks out)


def test_org_set_and_show_round_trip(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    app = create_app(app_config)
    runner = app.test_cli_runner()
    result = runner.invoke(args=[
        "org", "set", ORG, "--admin-email", " IT@Acme.example ", "--internal-domains", "acme.example, @acme.co.uk",
        "--blocklist", "Boss@Partner.example;rival.example", "--no-free-mail",
    ])
    assert result.exit_code == 0, result.output
    with app.app_context():
        from backend.extensions import services

        org = services().store.orgs.get(ORG)
    assert org.admin_email == "it@acme.example"
    assert org.internal_domains == ["acme.example", "acme.co.uk"]
    assert org.blocklist == ["boss@partner.example", "rival.example"]
    assert org.block_free_mail is True

    # Options not given keep their value; "" clears the admin address.
    assert runner.invoke(args=["org", "set", ORG, "--admin-email", "", "--free-mail"]).exit_code == 0
    shown = runner.invoke(args=["org", "show", ORG])
    assert shown.exit_code == 0
    assert '"admin_email": ""' in shown.output
    assert '"block_free_mail": false' in shown.output
    assert "rival.example" in shown.output


def test_org_set_notes_an_org_nobody_logged_in_from(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    result = create_app(app_config).test_cli_runner().invoke(args=["org", "set", ORG, "--free-mail"])
    assert result.exit_code == 0
    assert "nobody of org 00D000000000001EAA has logged in yet" in result.output


def test_org_accepts_the_15_character_id(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    app = create_app(app_config)
    result = app.test_cli_runner().invoke(args=["org", "set", "00D5g000004Xyz1", "--admin-email", "it@acme.example"])
    assert result.exit_code == 0, result.output
    assert '"org_id": "00D5g000004Xyz1EAC"' in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["org", "set", "005000000000001AAA", "--admin-email", "a@b.example"], "not a Salesforce org id"),
        (["org", "set", "00Dshort", "--admin-email", "a@b.example"], "not a Salesforce org id"),
        (["org", "set", ORG, "--admin-email", "not-an-address"], "is not an email address"),
        (["org", "set", ORG, "--internal-domains", "someone@acme.example"], "give domains, not addresses"),
        (["org", "set", ORG, "--internal-domains", "acme..example"], "is not an email address or domain"),
        (["org", "set", ORG, "--blocklist", "<script>"], "is not an email address or domain"),
        (["org", "set", ORG], "nothing to change"),
        (["org", "set", "00D000000000001AAA", "--admin-email", "a@b.example"], "does not check out"),
    ],
)
def test_org_set_refuses_bad_input(
    app_config: dict[str, Any], redis_client: redis.Redis, args: list[str], message: str
) -> None:
    app = create_app(app_config)
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 2
    assert message in result.output
    assert not redis_client.keys(f"sstest:org:{ORG}")


def test_rotating_before_every_process_has_the_new_keys_deletes_nothing(
    client: FlaskClient, ca: TestCA, app_config: dict[str, Any], redis_client: redis.Redis,
    fake_salesforce: RunningFake,
) -> None:
    # Issue 18: 'keys rotate' run with "NEW,OLD" while the running server still has only OLD.
    who = login(client, ca.ca_path)
    old_key = app_config["ENCRYPTION_KEYS"]
    new_key = Fernet.generate_key().decode()
    rotating = create_app({**app_config, "ENCRYPTION_KEYS": f"{new_key},{old_key}"})
    assert rotating.test_cli_runner().invoke(args=["keys", "rotate"]).exit_code == 0
    rotated = _secret_values(redis_client)
    redis_client.delete(*redis_client.keys("sstest:once:salesforce-check:*"))

    resp = client.get("/api/me", headers=who.headers)  # the old server, OLD only
    assert resp.status_code == 503 and resp.json["error"]["code"] == "server_misconfigured"
    assert "ENCRYPTION_KEYS" not in resp.get_data(as_text=True)  # the person is not told our settings
    assert _secret_values(redis_client) == rotated  # nothing deleted
    # Nothing revoked either: once the server has the new key list, the same token works.
    fresh = create_app({**app_config, "ENCRYPTION_KEYS": f"{new_key},{old_key}"})
    fresh.test_client_class = HttpsClient
    resp = fresh.test_client().get("/api/me", headers=who.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json["salesforce"]["status"] == "connected"


def test_keys_rotate_reaches_the_meeting_map(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    """Review 4, finding 4: a logged meeting's sealed key is rotated too, so its cancellation is still found."""
    old, new = app_config["ENCRYPTION_KEYS"], Fernet.generate_key().decode()
    with create_app({**app_config, "ENCRYPTION_KEYS": old}).app_context():
        services().store.meetings.remember("mbx1", {"remote-1": ("uid-123@example", 4102444800.0),
                                                    "remote-2": ("uid-456@example", 4102444800.0)})
        services().store.meetings.remember_series("mbx1", {"master-1": [("uid-789@example", 4102444800.0)]})
    result = create_app({**app_config, "ENCRYPTION_KEYS": f"{new},{old}"}).test_cli_runner().invoke(
        args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "and 2 meeting key(s)" in result.output
    with create_app({**app_config, "ENCRYPTION_KEYS": new}).app_context():
        meetings = services().store.meetings
        assert meetings.logged("mbx1", ["remote-1", "remote-2"]) == {
            "remote-1": ("uid-123@example", 4102444800.0), "remote-2": ("uid-456@example", 4102444800.0)}
        assert meetings.logged_series("mbx1", ["master-1"]) == {"master-1": [("uid-789@example", 4102444800.0)]}
    assert redis_client.ttl("sstest:evmap:mbx1") > 0  # the map still goes away by itself


def test_an_unreadable_meeting_key_is_reported_and_never_used(
    app_config: dict[str, Any], redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = SecretBox([Fernet.generate_key().decode()]).encrypt("uid-123@example")
    redis_client.hset("sstest:evmap:mbx1", "remote-1", f"4102444800|{stranger}")
    app = create_app(app_config)
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 1
    assert "1 meeting key(s) could not be decrypted" in result.output
    with app.app_context():
        # Not the sealed text as if it were the meeting's key: skipped, and said.
        assert services().store.meetings.logged("mbx1", ["remote-1"]) == {}
    assert "cannot be decrypted" in caplog.text


def test_a_meeting_key_from_before_sealing_is_read_and_sealed_by_rotate(app_config: dict[str, Any],
                                                                      redis_client: redis.Redis) -> None:
    # Entries written in clear before keys were sealed live up to the map's TTL (120 days).
    redis_client.hset("sstest:evmap:mbx1", "remote-1", "4102444800|uid-123@example")
    app = create_app(app_config)
    with app.app_context():
        assert services().store.meetings.logged("mbx1", ["remote-1"]) == {
            "remote-1": ("uid-123@example", 4102444800.0)}
    result = app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0, result.output
    stored = str(redis_client.hget("sstest:evmap:mbx1", "remote-1"))
    assert "uid-123@example" not in stored and stored.split("|", 1)[1].startswith("gAAAAA")
    with app.app_context():
        assert services().store.meetings.logged("mbx1", ["remote-1"]) == {
            "remote-1": ("uid-123@example", 4102444800.0)}
