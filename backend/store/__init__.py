"""Redis-backed repositories: the only code that reads or writes application keys in Redis.

Key namespace (``P`` is ``KEY_PREFIX``, default ``ss:``):

=====================================  ==========================================================
``P user:{uid}``                        hash: a Salesforce user of the add-in (no secret)
``P user:by-sf:{org}:{sf_user}``       string: uid for a Salesforce org + user id
``P user:sessions:{uid}``              set: API session ids of the user (to revoke them all)
``P users``                            set: every uid (admin listing, key rotation)
``P org:{org}``                        hash: org settings (admin address, blocklist, API budget)
``P org:users:{org}``                  set: uids of the org
``P mailbox:{mid}``                    hash: sync state and settings of one sync mailbox
``P cursors:{mid}``                    hash: folder -> connector cursor (saved after writes)
``P runs:{mid}``                       list: the latest run records (counts, never content)
``P quarantine:{mid}``                 list: rejected items (Message-ID, object, reason)
``P quarantine-idx:{mid}``             hash: ``{key}|{object}`` -> its entry in the list (no copies)
``P retries:{mid}``                    hash: item key -> transient refusals so far (7 days TTL)
``P sfcaps:{org}``                     string: JSON, the org's Salesforce capabilities (24 h TTL)
``P claim:{org}:{sha256}``             string: ``{mid}:{run}`` writing that Message-ID now (TTL, ``runs.py``)
``P evmap:{mid}``                      hash: remote event id -> ``{end}|{key}`` of meetings it organised
``P schedule``                         sorted set: mid scored by its next run time
``P secret:{kind}:{owner}:{name}``     string: a Fernet token (the only place secrets live)
``P apisession:{sid}``                 string: uid, with the bearer token's lifetime as TTL
``P once:{purpose}:{nonce}``           string: single-use markers and one-time dialog codes
``P ratelimit:{name}:{who}``           string: counters with a TTL
``P fsession:{sid}``                   Flask-Session data of the sign-in dialog windows
``P mstenant:{tid}``                   hash: a Microsoft 365 tenant's admin consent (``tenants.py``)
``P mstenants``                        set: tenant ids with a recorded admin consent
``P exid:{sha256}``                    string: JSON addresses an Exchange user id proved (``misc.py``)
=====================================  ==========================================================

Mail content (subjects, bodies, attachments) is never written here.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from backend.security.crypto import SecretBox
from backend.store.keys import Keys
from backend.store.mailboxes import MailboxRepo
from backend.store.misc import ExchangeIdentityRepo, OnceStore, OrgRepo, RateLimiter, ScheduleRepo
from backend.store.runs import SyncRunRepo
from backend.store.secrets import SecretStore
from backend.store.sessions import ApiSessionStore
from backend.store.users import UserRepo


@dataclass
class Store:
    """All repositories over one Redis connection."""

    redis: Redis
    keys: Keys
    secrets: SecretStore
    users: UserRepo
    orgs: OrgRepo
    mailboxes: MailboxRepo
    sessions: ApiSessionStore
    once: OnceStore
    schedule: ScheduleRepo
    ratelimit: RateLimiter
    runs: SyncRunRepo
    exchange_ids: ExchangeIdentityRepo

    @classmethod
    def build(cls, client: Redis, prefix: str, box: SecretBox) -> Store:
        """Assemble the repositories (``client`` must decode responses to str)."""
        keys = Keys(prefix)
        secrets = SecretStore(client, keys, box)
        return cls(
            redis=client,
            keys=keys,
            secrets=secrets,
            users=UserRepo(client, keys),
            orgs=OrgRepo(client, keys),
            mailboxes=MailboxRepo(client, keys, secrets),
            sessions=ApiSessionStore(client, keys),
            once=OnceStore(client, keys),
            schedule=ScheduleRepo(client, keys),
            ratelimit=RateLimiter(client, keys),
            runs=SyncRunRepo(client, keys),
            exchange_ids=ExchangeIdentityRepo(client, keys),
        )
