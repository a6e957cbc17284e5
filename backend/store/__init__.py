"""Redis-backed repositories: the only code that reads or writes application keys in Redis.

Key namespace (``P`` is ``KEY_PREFIX``, default ``ss:``), with the module that owns each key:

=====================================  ==========================================================
``P user:{uid}``                        hash: a Salesforce user of the add-in (no secret) (``users.py``)
``P user:by-sf:{org}:{sf_user}``       string: uid for a Salesforce org + user id (``users.py``)
``P user:sessions:{uid}``              set: API session ids of the user, to revoke them all (``sessions.py``)
``P users``                            set: every uid, for admin listing and key rotation (``users.py``)
``P org:{org}``                        hash: org settings (admin address, blocklist, API budget) (``orgs.py``)
``P org:users:{org}``                  set: uids of the org (``users.py``)
``P mailbox:{mid}``                    hash: state, settings of a sync mailbox (``mailboxes.py``; ``push``: push.py)
``P mailboxes``                        set: every mailbox id (``mailboxes.py``)
``P cursors:{mid}``                    hash: folder -> connector cursor, saved after writes (``mailboxes.py``)
``P runs:{mid}``                       list: the latest run records, counts never content (``runs.py``)
``P runtotals:{org}``                  hash: ``{hour}:runs`` / ``{hour}:failures`` of the org, 25 h kept (``runs.py``)
``P quarantine:{mid}``                 list: rejected items: hashed Message-ID, object, reason (``quarantine.py``)
``P quarantine-idx:{mid}``             hash: ``{key}|{object}`` -> its entry in the list, no copies (``quarantine.py``)
``P retries:{mid}``                    hash: hashed item key -> transient refusals, 7 days TTL (``retries.py``)
``P sfcaps:{org}``                     string: JSON, the org's Salesforce capabilities, 24 h TTL (``capabilities.py``)
``P claim:{org}:{sha256}``             string: ``{mid}:{run}`` writing that Message-ID now, with a TTL (``claims.py``)
``P evmap:{mid}``                      hash: remote id -> ``{end}|{sealed key}`` of meetings organised (``meetings.py``)
``P evrel:{org}:{sha256}``             set: person ids this product related to that meeting (``meetings.py``)
``P schedule``                         sorted set: mid scored by its next run time (``schedule.py``)
``P schedule:claims``                  hash: mid -> ``{planned start} {lease}`` of its last slot (``schedule.py``)
``P secret:{kind}:{owner}:{name}``     string: a Fernet token, the only place secrets live (``secrets.py``)
``P apisession:{sid}``                 string: uid, with the bearer token's lifetime as TTL (``sessions.py``)
``P once:{purpose}:{nonce}``           string: single-use markers and one-time dialog codes (``once.py``)
``P ratelimit:{name}:{who}``           string: counters with a TTL (``ratelimit.py``)
``P fsession:{sid}``                   Flask-Session data of the sign-in dialog windows (``backend/extensions.py``)
``P mstenant:{tid}``                   hash: a Microsoft 365 tenant's admin consent (``tenants.py``)
``P mstenants``                        set: tenant ids with a recorded admin consent (``tenants.py``)
``P mstenant-org:{tid}``               string: the org a tenant is connected to, one org a tenant (``org_access.py``)
``P exid:{sha256}``                    string: JSON addresses an Exchange user id proved (``exchange_ids.py``)
``P audit:{org}``                      list: the org's administrator actions, newest first (``audit.py``)
``P console:{sid}``                    string: JSON uid + CSRF token of an admin console session (``consoles.py``)
``P console:by-user:{uid}``            set: console session ids of a user, to end them all (``consoles.py``)
``P orgaccess:{org}``                  hash: an org's mailbox access: tenant, breakage (``org_access.py``)
``P activation:{id}``                  hash, lists ``:addresses`` ``:results``: 7 days (``activations.py``)
``P trail:{mid}:{hmac}``               string: sync's decision on one item: codes, ids, times; 30 days (``trail.py``)
``P push:subs:{mid}``                  hash: subscription id -> JSON: kind, resource, expiry, state hash (``push.py``)
``P push:sub:{subscription}``          hash: ``mid``, ``state`` (clientState hash), ``provider`` of an id (``push.py``)
``P push:reauth:{mid}``                set: ids Graph asked to reauthorize, for the renewal job; 1 day (``push.py``)
``P push:renew``                       sorted set: mid scored by its earliest subscription's renewal time (``push.py``)
``P push:planned:{mid}``               string: when a notification-triggered run is planned, TTL (``push.py``)
``P push:last:{mid}``                  string: when the last notification-triggered run was planned, TTL (``push.py``)
``P dir:{org}:{sort}``                 zset: ``{key}\x00{uid}`` for a sort; per state/provider too (``directory.py``)
``P dir:{org}:terms``                  zset: ``{word-start text}\x00{uid}``: the console's search (``directory.py``)
``P dir:{org}:rows``                   hash: uid -> JSON of its index entries (``directory.py``)
``P dir:{org}:success`` / ``:fresh``   sorted sets: running uids by last success / or activation (``directory.py``)
``P dir:{org}:built``                  string: the index version the org's index was built with (``directory.py``)
=====================================  ==========================================================

Mail content (subjects, bodies, attachments) is never written here.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from backend.security.crypto import SecretBox, keyed_hash, keyed_hasher
from backend.store.activations import ActivationRepo
from backend.store.audit import AuditLog
from backend.store.batch import Batch
from backend.store.capabilities import CapabilityRepo
from backend.store.claims import EmailClaimRepo
from backend.store.consoles import ConsoleSessionRepo
from backend.store.directory import DirectoryIndex
from backend.store.exchange_ids import ExchangeIdentityRepo
from backend.store.keys import Keys
from backend.store.mailboxes import MailboxRepo
from backend.store.meetings import MeetingMapRepo
from backend.store.once import OnceStore
from backend.store.org_access import OrgAccessRepo
from backend.store.orgs import OrgRepo
from backend.store.push import PushRepo
from backend.store.quarantine import QuarantineRepo
from backend.store.ratelimit import RateLimiter
from backend.store.retries import RetryCountRepo
from backend.store.runs import RunHistoryRepo
from backend.store.schedule import ScheduleRepo
from backend.store.secrets import SecretStore
from backend.store.sessions import ApiSessionStore
from backend.store.tenants import TenantRepo
from backend.store.trail import ItemTrailRepo
from backend.store.users import UserRepo

__all__ = ["Store"]


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
    runs: RunHistoryRepo
    quarantine: QuarantineRepo
    retries: RetryCountRepo
    capabilities: CapabilityRepo
    claims: EmailClaimRepo
    meetings: MeetingMapRepo
    tenants: TenantRepo
    exchange_ids: ExchangeIdentityRepo
    audit: AuditLog
    consoles: ConsoleSessionRepo
    trail: ItemTrailRepo
    push: PushRepo
    org_access: OrgAccessRepo
    activations: ActivationRepo
    directory: DirectoryIndex

    def batch(self) -> Batch:
        """A batch of reads of several repositories, sent as one pipeline (``backend.store.batch``)."""
        return Batch(self.redis)

    @classmethod
    def build(cls, client: Redis, prefix: str, box: SecretBox, hash_key: str) -> Store:
        """Assemble the repositories (``client`` must decode responses to str; ``hash_key`` keys item hashes)."""
        keys = Keys(prefix)
        secrets = SecretStore(client, keys, box)
        # Item identifiers are stored only as keyed hashes: a separate key per purpose.
        item_keyed = keyed_hasher(keyed_hash(hash_key, "sidebar-sync item trail"))

        def item_hash(identifier: str) -> str:
            return item_keyed(identifier)[:40]

        push_key = keyed_hash(hash_key, "sidebar-sync push client state")

        def state_hash(client_state: str) -> str:
            return keyed_hash(push_key, client_state)

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
            runs=RunHistoryRepo(client, keys),
            quarantine=QuarantineRepo(client, keys, item_hash),
            retries=RetryCountRepo(client, keys, item_hash),
            capabilities=CapabilityRepo(client, keys),
            claims=EmailClaimRepo(client, keys),
            meetings=MeetingMapRepo(client, keys, box),
            tenants=TenantRepo(client, keys),
            exchange_ids=ExchangeIdentityRepo(client, keys),
            audit=AuditLog(client, keys),
            consoles=ConsoleSessionRepo(client, keys),
            trail=ItemTrailRepo(client, keys, item_hash),
            push=PushRepo(client, keys, state_hash),
            org_access=OrgAccessRepo(client, keys, secrets),
            activations=ActivationRepo(client, keys),
            directory=DirectoryIndex(client, keys),
        )
