"""The test and benchmark Redis claim: never a database below the one REDIS_URL names."""

from __future__ import annotations

import pytest
import redis

from sandbox.redis_server import CLAIM_KEY, claim_database, first_database, release_database


@pytest.mark.parametrize("url, first", [
    ("redis://127.0.0.1:6379/6", 6),
    ("redis://127.0.0.1:6379/15", 15),
    ("redis://127.0.0.1:6379/1", 1),
    ("redis://127.0.0.1:6379/0", 1),  # db 0 is development data: never claimed
    ("redis://127.0.0.1:6379", 1),
    ("redis://127.0.0.1:6379/", 1),
    ("redis://127.0.0.1:6379/16", 1),
    ("redis://127.0.0.1:6379/x", 1),
    ("unix:///tmp/redis.sock?db=7", 7),
    ("unix:///tmp/redis.sock", 1),
])
def test_first_database_is_the_named_one(url: str, first: int) -> None:
    assert first_database(url) == first


def test_a_claim_never_goes_below_the_named_database(redis_url: str) -> None:
    # The suite holds redis_url's database: a claim naming it must take a higher one, not a lower one.
    held = int(redis_url.rsplit("/", 1)[1])
    if held >= 15:
        pytest.skip("the suite holds the last database")
    url, token = claim_database(redis_url)
    try:
        claimed = int(url.rsplit("/", 1)[1])
        assert held < claimed <= 15
        assert redis.Redis.from_url(url, decode_responses=True).get(CLAIM_KEY) == token
    finally:
        release_database(url, token)
