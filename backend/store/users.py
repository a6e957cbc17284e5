"""Users of the add-in: one per Salesforce user (org id + user id)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from backend.store.batch import Batch, Deferred
from backend.store.codec import decode, encode, encode_value
from backend.store.directory_script import USER_FIELDS, reindex
from backend.store.keys import Keys


def user_id_for(org_id: str, sf_user_id: str) -> str:
    """The stable user id for a Salesforce org and user (ids are not secret; this just shortens)."""
    digest = hashlib.sha256(f"{org_id}:{sf_user_id}".encode()).hexdigest()[:24]
    return f"u{digest}"


@dataclass
class User:
    """A Salesforce user of the add-in. Secrets (tokens) live in the secret store, not here."""

    id: str
    org_id: str
    sf_user_id: str
    username: str = ""
    email: str = ""
    display_name: str = ""
    instance_url: str = ""
    # The OAuth host the user logged in through; token refreshes go there.
    login_url: str = ""
    environment: str = "production"
    addin_mailbox: str = ""
    addin_mailbox_verified: bool = False
    # How the add-in mailbox was proven: "naa:{tid}:{oid}" or "exchange:{amurl host}:{port}/{msexchuid}", or "".
    addin_identity: str = ""
    salesforce_status: str = "connected"
    # How the server signs in to Salesforce for this person: "" their own login (refresh token), or
    # "jwt_bearer" (mass-activated by an admin; their own login takes over once they make one).
    salesforce_access: str = ""
    salesforce_status_reason: str = ""
    # An administrator of the org's Sidebar Sync (backend.admin.roles), and when Salesforce last said so.
    is_admin: bool = False
    admin_checked_at: float = 0.0
    # Last time the add-in called the API for this user (at most one write per few minutes).
    last_seen_at: float = 0.0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, object]:
        """Fields safe to show the user."""
        data = asdict(self)
        data.pop("sf_user_id", None)
        return data


class UserRepo:
    """Reads and writes users."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._r = client
        self._keys = keys

    def get(self, uid: str) -> User | None:
        """The user, or None."""
        data = self._r.hgetall(self._keys("user", uid))
        return decode(User, data) if data else None  # type: ignore[arg-type]

    def get_in(self, batch: Batch, uid: str) -> Deferred[User | None]:
        """:meth:`get`, read with the batch."""
        batch.pipe.hgetall(self._keys("user", uid))
        return batch.defer(lambda data: decode(User, data) if data else None)

    def find_by_salesforce(self, org_id: str, sf_user_id: str) -> User | None:
        """The user for a Salesforce identity, or None."""
        uid = self._r.get(self._keys("user", "by-sf", org_id, sf_user_id))
        return self.get(str(uid)) if uid else None

    def save(self, user: User) -> None:
        """Create or replace a user and its indexes."""
        user.updated_at = time.time()
        with self._r.pipeline() as pipe:
            pipe.hset(self._keys("user", user.id), mapping=encode(user))  # type: ignore[arg-type]
            pipe.set(self._keys("user", "by-sf", user.org_id, user.sf_user_id), user.id)
            pipe.sadd(self._keys("users"), user.id)
            pipe.sadd(self._keys("org", "users", user.org_id), user.id)
            reindex(pipe, self._keys.prefix, user.id)
            pipe.execute()

    def update(self, uid: str, **changes: object) -> None:
        """Change some fields of an existing user (the console's index follows in the same MULTI)."""
        changes["updated_at"] = time.time()
        mapping: dict[Any, Any] = {k: encode_value(v) for k, v in changes.items()}
        if USER_FIELDS.isdisjoint(changes):
            self._r.hset(self._keys("user", uid), mapping=mapping)
            return
        with self._r.pipeline() as pipe:
            pipe.hset(self._keys("user", uid), mapping=mapping)
            reindex(pipe, self._keys.prefix, uid)
            pipe.execute()

    def remove(self, user: User) -> None:
        """Forget a user: the user, their sync mailbox's hash, the indexes (secrets are the caller's)."""
        with self._r.pipeline() as pipe:
            pipe.delete(self._keys("user", user.id), self._keys("mailbox", user.id))
            pipe.delete(self._keys("user", "by-sf", user.org_id, user.sf_user_id))
            pipe.srem(self._keys("users"), user.id)
            pipe.srem(self._keys("org", "users", user.org_id), user.id)
            pipe.srem(self._keys("mailboxes"), user.id)
            reindex(pipe, self._keys.prefix, user.id, org=user.org_id)
            pipe.execute()

    def all_ids(self) -> list[str]:
        """Every user id."""
        return sorted(str(u) for u in self._r.smembers(self._keys("users")))

    def org_user_ids(self, org_id: str) -> list[str]:
        """Every user id of an org."""
        return sorted(str(u) for u in self._r.smembers(self._keys("org", "users", org_id)))
