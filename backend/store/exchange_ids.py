"""Exchange identities (``P exid:{sha256}``): the addresses an on-premises Exchange user id proved."""

from __future__ import annotations

import hashlib
import json

import redis

from backend.store.keys import Keys


class ExchangeIdentityRepo:
    """Which mailbox addresses an on-premises Exchange user id (an identity token's ``msexchuid``) has.

    The identity token names no address; the tie is recorded when that user connects the mailbox with
    its password (which proves it), and an identity token is then proof of those addresses.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def _key(self, identity: str) -> str:
        return self._keys("exid", hashlib.sha256(identity.encode("utf-8")).hexdigest()[:40])

    def addresses(self, identity: str) -> frozenset[str]:
        """The addresses tied to ``identity`` (empty when none yet)."""
        raw = self._r.get(self._key(identity))
        return frozenset(json.loads(raw)) if raw else frozenset()

    def bind(self, identity: str, addresses: list[str]) -> None:
        """Tie ``identity`` to ``addresses`` (the last proven connection wins)."""
        self._r.set(self._key(identity), json.dumps(sorted({a.lower() for a in addresses})))
