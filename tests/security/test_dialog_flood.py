"""An anonymous flood of ``/auth/salesforce/start`` (or ``/auth/microsoft/admin-consent``) is bounded per
client address, network and overall (429)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask

from backend.auth import common
from backend.extensions import services
from sandbox.login import PANE_CHALLENGE, dialog_payload

START = f"/auth/salesforce/start?pane_challenge={PANE_CHALLENGE}"


def _flood(app: Flask, addresses: list[str]) -> list[int]:
    """One cookie-less start per address (a flooder drops the cookie, so each start writes a session)."""
    statuses = []
    for address in addresses:
        resp = app.test_client().get(START, environ_base={"REMOTE_ADDR": address})
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            assert int(resp.headers["Retry-After"]) > 0
            assert dialog_payload(resp.get_data(as_text=True))["error"]["code"] == "rate_limited"
    return statuses


def _dialog_sessions(redis_client: redis.Redis) -> int:
    return sum(1 for _ in redis_client.scan_iter(match="sstest:fsession:*", count=1000))


def test_one_address_is_bounded_and_others_still_sign_in(app: Flask, redis_client: redis.Redis) -> None:
    """Past the per-address limit one address gets 429 + Retry-After and no new session; another is served."""
    limit = common.DIALOG_STARTS_PER_ADDRESS
    statuses = _flood(app, ["203.0.113.7"] * (limit + 20))
    assert statuses == [302] * limit + [429] * 20
    assert _dialog_sessions(redis_client) == limit
    assert _flood(app, ["198.51.100.9"]) == [302]


@pytest.mark.parametrize("per_address", [1, 3])
def test_many_addresses_hit_the_overall_cap(
    app: Flask, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, per_address: int
) -> None:
    """A flood from many addresses stops at the overall cap of live dialog sessions."""
    monkeypatch.setattr(common, "DIALOG_STARTS_OVERALL", 40)
    addresses = [f"10.0.{n // 250}.{n % 250}" for n in range(100) for _ in range(per_address)]
    statuses = _flood(app, addresses)
    assert statuses.count(302) == 40 and statuses[:40] == [302] * 40
    assert _dialog_sessions(redis_client) == 40


def test_one_ipv6_prefix_cannot_lock_everyone_out(app: Flask, redis_client: redis.Redis) -> None:
    """Review 4, finding 2: a host's /64 is one address, so its 2**64 addresses cannot reach the overall cap."""
    per = common.DIALOG_STARTS_PER_ADDRESS
    hosts = common.DIALOG_STARTS_OVERALL // per + 1
    statuses = _flood(app, [f"2001:db8:1:2::{host:x}" for host in range(hosts) for _ in range(per)])
    assert statuses.count(302) == per
    assert _flood(app, ["198.51.100.9"]) == [302]  # a real person elsewhere
    assert _flood(app, ["2001:db8:1:3::1"]) == [302]  # the neighbouring /64 is someone else


def test_one_network_takes_only_its_share_of_the_overall_cap(
    app: Flask, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many /64s of one /48 (or addresses of one IPv4 /24) stop at the network's share; others sign in."""
    monkeypatch.setattr(common, "DIALOG_STARTS_PER_NETWORK", 12)
    monkeypatch.setattr(common, "DIALOG_STARTS_OVERALL", 40)
    statuses = _flood(app, [f"2001:db8:1:{n:x}::1" for n in range(30)])
    assert statuses == [302] * 12 + [429] * 18
    assert _flood(app, [f"203.0.113.{n}" for n in range(30)]).count(302) == 12
    assert _flood(app, ["2001:db8:2::1", "198.51.100.9"]) == [302, 302]


def test_an_ipv4_mapped_address_counts_as_the_ipv4_client(app: Flask, redis_client: redis.Redis) -> None:
    limit = common.DIALOG_STARTS_PER_ADDRESS
    statuses = _flood(app, ["203.0.113.7", "::ffff:203.0.113.7"] * limit)
    assert statuses.count(302) == limit


@pytest.mark.parametrize(("remote_addr", "buckets"), [
    ("203.0.113.7", ("203.0.113.7", "203.0.113.0/24")),
    ("::ffff:203.0.113.7", ("203.0.113.7", "203.0.113.0/24")),
    ("2001:DB8:1:2:aaaa::7", ("2001:db8:1:2::/64", "2001:db8:1::/48")),
    (None, ("unknown", "unknown")),
    ("not an address", ("not an address", "not an address")),
])
def test_client_buckets(remote_addr: str | None, buckets: tuple[str, str]) -> None:
    assert common.client_buckets(remote_addr) == buckets


def test_an_admin_consent_flood_is_bounded_too(app: Flask, redis_client: redis.Redis,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 4, finding 3: the anonymous admin-consent start is counted with the others, before any msal work."""
    signins: list[str] = []
    with app.app_context():
        auth = services().clients.microsoft_auth
    real = auth.start_admin_signin

    def counted(state: str, tenant: str | None = None) -> dict[str, Any]:
        signins.append(tenant or "")
        return real(state, tenant)

    monkeypatch.setattr(auth, "start_admin_signin", counted)
    limit = common.DIALOG_STARTS_PER_ADDRESS
    statuses = []
    for n in range(limit + 20):
        resp = app.test_client().get(f"/auth/microsoft/admin-consent?tenant=tenant-{n}.onmicrosoft.com",
                                     environ_base={"REMOTE_ADDR": "203.0.113.7"})
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            assert dialog_payload(resp.get_data(as_text=True))["error"]["code"] == "rate_limited"
    assert statuses == [302] * limit + [429] * 20
    assert _dialog_sessions(redis_client) == limit and len(signins) == limit
    # The same bound as the Salesforce start: that address has none left there either.
    assert _flood(app, ["203.0.113.7", "198.51.100.9"]) == [429, 302]
