"""Claims taken ahead of a batch: trusted at its write while fresh, claimed again once stale, released once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from cryptography.fernet import Fernet

from backend.connectors.mailbox import Address, EmailItem, Folder
from backend.security.crypto import SecretBox
from backend.store import Store
from backend.store.claims import EmailClaimRepo
from backend.sync import claims
from backend.sync.claims import ClaimedWrites

ORG = "00DCLAIMS"


@pytest.fixture
def repo(redis_client: redis.Redis) -> EmailClaimRepo:
    """The claim repository on the suite's Redis (its database is flushed around each test)."""
    return Store.build(redis_client, "sstest:", SecretBox([Fernet.generate_key().decode()]), "k").claims


class Spy:
    """An EmailClaimRepo that remembers the keys each claim call asked for."""

    def __init__(self, repo: EmailClaimRepo) -> None:
        self.repo = repo
        self.claimed: list[list[str]] = []
        self.released: list[list[str]] = []

    def claim(self, org_id: str, keys: list[str], holder: str, ttl: int) -> set[str]:
        self.claimed.append(list(keys))
        return self.repo.claim(org_id, keys, holder, ttl)

    def release(self, org_id: str, keys: list[str], holder: str) -> int:
        self.released.append(list(keys))
        return self.repo.release(org_id, keys, holder)

    def held_by_others(self, org_id: str, keys: list[str], holder: str) -> set[str]:
        return self.repo.held_by_others(org_id, keys, holder)


def emails(n: int) -> list[EmailItem]:
    return [EmailItem(remote_id=f"r{i}", folder=Folder.INBOX, message_id=f"<m{i}@x>",
                      sender=Address("a@customer.example")) for i in range(n)]


@pytest.fixture
def spy(repo: EmailClaimRepo) -> Iterator[Spy]:
    yield Spy(repo)


def writes(spy: Spy) -> ClaimedWrites:
    return ClaimedWrites(spy, ORG, "mb1:run1", "mb1", claims.write_lease(800, 180))  # type: ignore[arg-type]


def test_fresh_claims_taken_ahead_are_not_claimed_again_and_are_released_by_their_write(spy: Spy) -> None:
    batch = emails(3)
    claimed_writes = writes(spy)
    assert claimed_writes.claim_ahead([e.dedup_key for e in batch]) == {e.dedup_key for e in batch}
    written: list[list[str]] = []
    claimed_writes.write(batch, [], set(), lambda es, _: written.append([e.dedup_key for e in es]), lambda _: None)
    assert written == [[e.dedup_key for e in batch]]
    assert spy.claimed[1:] == [[]]  # the write asked Redis for nothing more
    assert sorted(spy.released[-1]) == sorted(e.dedup_key for e in batch)
    assert claimed_writes.ahead == {}
    claimed_writes.release_ahead()
    assert len(spy.released) == 1  # nothing left to release at the end of the run


@pytest.mark.parametrize(("age", "claimed_again"), [(-1.0, False), (+1.0, True)])
def test_a_claim_taken_ahead_is_trusted_only_while_a_whole_write_is_left_of_its_life(
        spy: Spy, monkeypatch: pytest.MonkeyPatch, age: float, claimed_again: bool) -> None:
    batch = emails(2)
    # 5 calls of 180 s: three write calls (a batch of 800 holds up to 999), a resend, the look-up.
    lease = claims.write_lease(800, 180)
    claimed_writes = ClaimedWrites(spy, ORG, "mb1:run1", "mb1", lease)  # type: ignore[arg-type]
    assert (lease, claimed_writes.ttl, claimed_writes.fresh_for) == (900, 1200, 300)
    now = 1000.0
    monkeypatch.setattr(claims.time, "monotonic", lambda: now)
    claimed_writes.claim_ahead([e.dedup_key for e in batch])
    # The batch before took this long: the claim has less than (or still more than) a lease to live.
    now += claimed_writes.fresh_for + age
    claimed_writes.write(batch, [], set(), lambda es, _: None, lambda _: None)
    assert spy.claimed[1:] == ([sorted(e.dedup_key for e in batch)] if claimed_again else [[]])


def test_claims_live_as_long_as_a_write_may_take(spy: Spy, repo: EmailClaimRepo, redis_client: redis.Redis) -> None:
    # Write calls allowed an hour each (SALESFORCE_WRITE_TIMEOUT_SECONDS): the claims outlive them.
    lease = claims.write_lease(800, 3600)
    claimed_writes = ClaimedWrites(spy, ORG, "mb1:run1", "mb1", lease)  # type: ignore[arg-type]
    claimed_writes.claim_ahead(["<long@x>"])
    ttls = [redis_client.ttl(key) for key in redis_client.scan_iter(match="sstest:*")]
    assert ttls and all(lease - 5 <= ttl <= lease for ttl in ttls)
    assert claimed_writes.fresh_for == 0  # so each batch claims its emails again at its write


def test_a_key_another_run_took_is_never_trusted_from_the_ahead_list(spy: Spy, repo: EmailClaimRepo) -> None:
    batch = emails(2)
    claimed_writes = writes(spy)
    # A colleague holds the first email before this run claims ahead: only the second is ours.
    repo.claim(ORG, [batch[0].dedup_key], "mb2:run9", 600)
    assert claimed_writes.claim_ahead([e.dedup_key for e in batch]) == {batch[1].dedup_key}
    written: list[str] = []
    repo.release(ORG, [batch[0].dedup_key], "mb2:run9")  # the colleague finished
    claimed_writes.write(batch, [], set(), lambda es, _: written.extend(e.dedup_key for e in es), lambda _: None)
    # The first was claimed at the write (not trusted), so it is written too, exactly once.
    assert spy.claimed[1] == [batch[0].dedup_key]
    assert sorted(written) == sorted(e.dedup_key for e in batch)
