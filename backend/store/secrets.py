"""Secrets at rest: every secret is a Fernet token under ``secret:{kind}:{owner}:{name}``.

Keeping secrets in their own keys (not inside user or mailbox hashes) makes key rotation a scan of
one key family, and makes it easy to prove that nothing else holds a secret.
"""

from __future__ import annotations

import redis

from backend.security.crypto import DecryptError, SecretBox
from backend.store.keys import Keys


class SecretStore:
    """Encrypts on write, decrypts on read, re-encrypts on rotation."""

    def __init__(self, client: redis.Redis, keys: Keys, box: SecretBox) -> None:
        self._r = client
        self._keys = keys
        self.box = box

    def key_of(self, kind: str, owner: str, name: str) -> str:
        """The Redis key of one secret (for a caller that deletes it in its own pipeline)."""
        return self._keys("secret", kind, owner, name)

    def put(self, kind: str, owner: str, name: str, value: str) -> None:
        """Store ``value`` encrypted."""
        self._r.set(self.key_of(kind, owner, name), self.box.encrypt(value))

    def get(self, kind: str, owner: str, name: str) -> str | None:
        """The decrypted secret, or None when absent."""
        token = self._r.get(self.key_of(kind, owner, name))
        if token is None:
            return None
        return self.box.decrypt(str(token))

    def delete(self, kind: str, owner: str, name: str | None = None) -> int:
        """Delete one secret, or every secret of an owner when ``name`` is None."""
        if name is not None:
            return int(self._r.delete(self.key_of(kind, owner, name)))
        doomed = list(self._r.scan_iter(match=self._keys.pattern("secret", kind, owner, "*"), count=500))
        return int(self._r.delete(*doomed)) if doomed else 0

    def rotate_all(self) -> tuple[int, int]:
        """Re-encrypt every stored secret under the current key; returns (rotated, unreadable)."""
        rotated = unreadable = 0
        for key in self._r.scan_iter(match=self._keys.pattern("secret", "*"), count=500):
            token = self._r.get(key)
            if token is None:
                continue
            try:
                fresh = self.box.rotate(str(token))
            except DecryptError:
                unreadable += 1
                continue
            # Compare-and-set: a secret replaced while we rotated must not be overwritten.
            with self._r.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    if pipe.get(key) != token:
                        pipe.unwatch()
                        continue
                    pipe.multi()
                    pipe.set(key, fresh, keepttl=True)
                    pipe.execute()
                    rotated += 1
                except redis.WatchError:
                    continue
        return rotated, unreadable
