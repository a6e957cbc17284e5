"""An anonymous flood of ``/auth/salesforce/start`` is bounded per client address and overall (429)."""

from __future__ import annotations

import pytest
import redis
from flask import Flask

from backend.auth import common
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
