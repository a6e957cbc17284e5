"""Instant sync for a mailbox: its Graph subscriptions made, renewed, recreated and deleted, and its health.

A notification is only a trigger; the run it starts is the normal delta run, so a lost subscription
loses freshness, never mail: polling goes on (every 2 hours at most while push is healthy, back to
the base interval at once when it is not). Only Microsoft 365 mailboxes subscribe; Exchange on
premises keeps polling (streaming notifications would hold a connection per mailbox).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from backend.clients import Clients
from backend.config import Settings
from backend.errors import AuthRevoked, ConnectorError
from backend.security.crypto import random_token
from backend.store import Store
from backend.store.mailboxes import SyncMailbox, SyncState
from backend.store.push import GMAIL_ID_PREFIX, PushHealth, Subscription
from backend.sync.collaborators import context_for

log = logging.getLogger(__name__)

PUSH_PROVIDERS = frozenset({"microsoft", "google"})
KINDS = ("inbox", "sentitems", "calendar")
GMAIL_KIND = "gmail"
GMAIL_RENEW_SECONDS = 24 * 3600
# While push is healthy the poll is only the safety net: every 2 hours, never longer.
PUSH_POLL_SECONDS = 2 * 3600
HOOK_PATH = "/hooks/graph"
# The lifetime asked for a subscription; Graph decides what it grants (its answer is what is kept).
SUBSCRIPTION_MINUTES = 4230
LIFECYCLE_PATH = "/hooks/graph/lifecycle"


def kinds_for(settings: Settings, provider: str) -> tuple[str, ...]:
    """What a mailbox of ``provider`` subscribes to here: Graph's three resources, one Gmail watch, or nothing."""
    if provider == "microsoft" and settings.PUSH_NOTIFICATIONS:
        return KINDS
    if provider == "google" and settings.GOOGLE_PUBSUB_TOPIC and settings.GOOGLE_PUBSUB_PUSH_ACCOUNT:
        return (GMAIL_KIND,)
    return ()


def gmail_sub_id(address: str) -> str:
    """The id a Gmail watch is kept under: pushes name the mailbox by its address."""
    return f"{GMAIL_ID_PREFIX}{address.lower()}"


def push_wanted(settings: Settings, mailbox: SyncMailbox | None) -> bool:
    """Whether the mailbox should have subscriptions now (push configured for its provider, running)."""
    return (mailbox is not None and mailbox.state is SyncState.RUNNING
            and bool(kinds_for(settings, mailbox.provider)))


def poll_interval(store: Store, mid: str, interval: int) -> int:
    """The background interval: 2 hours (or a longer ``interval``) while push is healthy, else ``interval``."""
    # Never shorter than the base interval: a long one (set by the org or the engineer) stays.
    return max(PUSH_POLL_SECONDS, interval) if store.push.healthy(mid) else interval


def fall_back(store: Store, settings: Settings, mid: str, reason: str, now: float | None = None) -> None:
    """Push is off for the mailbox: say why; when it was on, poll at the base interval from now on."""
    now = time.time() if now is None else now
    was = store.push.health(mid)
    store.push.set_health(mid, False, reason, now)
    if was is None or not was.on:
        return  # push was not on: polling is at the base interval already, its cadence is left alone
    mailbox = store.mailboxes.get(mid)
    if mailbox is None or mailbox.state is not SyncState.RUNNING:
        return
    store.mailboxes.update(mid, quiet_runs=0, interval_seconds=settings.SYNC_INTERVAL_SECONDS)
    due = store.schedule.next_of(mid)
    soonest = now + settings.SYNC_INTERVAL_SECONDS
    if due is None or due > soonest:
        store.schedule.set_next(mid, soonest)
    log.warning("instant sync off mid=%s reason=%s", mid, reason)


class PushManager:
    """Makes a mailbox's subscriptions match what it should have."""

    def __init__(self, store: Store, settings: Settings, clients: Clients) -> None:
        self.store = store
        self.settings = settings
        self.clients = clients

    def _open(self, mailbox: SyncMailbox) -> Any:
        context = context_for(self.settings, self.store, self.clients, mailbox)
        if mailbox.provider == "google":
            from backend.connectors.google.push import open_watch

            return _GmailStop(open_watch(context))
        from backend.connectors.graph.subscriptions import open_subscriptions

        return open_subscriptions(context)

    def _create(self, subs: Any, mailbox: SyncMailbox, kind: str) -> Subscription:
        base = self.settings.PUBLIC_BASE_URL
        client_state = random_token(24)
        made = subs.create(kind, client_state, base + HOOK_PATH, base + LIFECYCLE_PATH,
                           SUBSCRIPTION_MINUTES)
        sub = Subscription(made.id, mailbox.id, kind, made.resource, made.expires_at,
                           self.store.push.hash_state(client_state), time.time())
        self.store.push.save(sub)
        return sub

    def ensure(self, mid: str, recreate: frozenset[str] = frozenset()) -> int:
        """Create the missing subscriptions (and those in ``recreate``); how many were made.

        Refusals (the handshake failed, consent missing) turn push off with the reason; transient
        errors are raised for the job to retry.
        """
        mailbox = self.store.mailboxes.get(mid)
        if not push_wanted(self.settings, mailbox):
            return 0
        assert mailbox is not None
        have = {s.kind: s for s in self.store.push.of(mid)}
        if mailbox.provider == "google":
            return self._watch_gmail(mailbox) if GMAIL_KIND not in have or recreate else 0
        missing = [k for k in KINDS if k not in have or have[k].id in recreate]
        if not missing:
            return 0
        subs = self._open(mailbox)
        try:
            for kind in missing:
                old = have.get(kind)
                if old is not None:
                    self.store.push.forget(mid, old.id)
                    try:
                        subs.delete(old.id)
                    except ConnectorError:
                        pass  # Graph removed it already, or will let it expire: it no longer reaches us
                self._create(subs, mailbox, kind)
        except ConnectorError as exc:
            fall_back(self.store, self.settings, mid, _reason(exc))
            if exc.transient:
                raise
            return 0
        finally:
            subs.close()
        self.store.push.set_health(mid, True)
        log.info("instant sync on mid=%s made=%d", mid, len(missing))
        return len(missing)

    def _watch_gmail(self, mailbox: SyncMailbox) -> int:
        """``users.watch`` (a first one or a renewal: the same call); 1 when it was made."""
        from backend.connectors.google.push import open_watch

        watch = open_watch(context_for(self.settings, self.store, self.clients, mailbox))
        try:
            _, expires = watch.watch(self.settings.GOOGLE_PUBSUB_TOPIC)
        except ConnectorError as exc:
            fall_back(self.store, self.settings, mailbox.id, _reason(exc))
            if exc.transient:
                raise
            return 0
        finally:
            watch.close()
        # Pushes carry no clientState (the OIDC token proves them): the index keeps the hash of a
        # random one nobody is told, so no clientState a sender can know matches a watch.
        self.store.push.save(Subscription(gmail_sub_id(mailbox.address), mailbox.id, GMAIL_KIND,
                                          f"users/me INBOX,SENT -> {self.settings.GOOGLE_PUBSUB_TOPIC}", expires,
                                          self.store.push.hash_state(random_token(24)), time.time(),
                                          GMAIL_RENEW_SECONDS))
        self.store.push.set_health(mailbox.id, True)
        return 1

    def renew(self, mid: str, now: float | None = None, only: frozenset[str] = frozenset()) -> int:
        """Renew the subscriptions past half their lifetime, and those in ``only`` (Graph asked);
        recreate any Graph lost; how many were renewed."""
        now = time.time() if now is None else now
        mailbox = self.store.mailboxes.get(mid)
        if not push_wanted(self.settings, mailbox):
            self.drop(mid)
            return 0
        assert mailbox is not None
        due = [s for s in self.store.push.of(mid) if s.renew_at <= now or s.id in only]
        if not due:
            # Looked at early (a reauthorization already done, the clock's lease): due again when one is.
            self.store.push.reschedule(mid)
            return 0
        if mailbox.provider == "google":
            return self._watch_gmail(mailbox)
        subs = self._open(mailbox)
        gone: set[str] = set()
        try:
            for sub in due:
                expires = subs.renew(sub.id, SUBSCRIPTION_MINUTES)
                if expires is None:
                    gone.add(sub.id)
                    continue
                self.store.push.save(Subscription(sub.id, mid, sub.kind, sub.resource, expires, sub.state_hash, now))
        except ConnectorError as exc:
            fall_back(self.store, self.settings, mid, _reason(exc, "renew"), now)
            if exc.transient:
                raise
            return 0
        finally:
            subs.close()
        if gone:
            self.ensure(mid, recreate=frozenset(gone))
        else:
            self.store.push.set_health(mid, True)
        return len(due)

    def drop(self, mid: str) -> int:
        """Delete every subscription of the mailbox (at Graph when it still lets us) and forget them."""
        known = self.store.push.of(mid)
        mailbox = self.store.mailboxes.get(mid)
        deleted = 0
        if known and mailbox is not None and mailbox.provider in PUSH_PROVIDERS and mailbox.connection:
            subs = self._open(mailbox)
            try:
                for sub in known:
                    deleted += int(subs.delete(sub.id))
            except AuthRevoked:
                # The credentials are gone (disabled, revoked): Graph ends them at expiry, and a
                # notification for a forgotten subscription is refused as unknown.
                pass
            finally:
                subs.close()
        for sub in known:
            self.store.push.forget(mid, sub.id)
        self.store.push.clear_health(mid)
        return deleted


class _GmailStop:
    """A Gmail watch seen as subscriptions to delete (``users.stop`` ends it whatever the id)."""

    def __init__(self, watch: Any) -> None:
        self.watch = watch

    def delete(self, sub_id: str) -> bool:
        """Stop the watch."""
        self.watch.stop()
        return True

    def close(self) -> None:
        """Release connections."""
        self.watch.close()


def _reason(exc: ConnectorError, doing: str = "create") -> str:
    what = "could not be renewed" if doing == "renew" else "could not be turned on"
    return f"Instant sync {what}: {exc.message}" if getattr(exc, "message", "") else f"Instant sync {what}."


def instant_sync_view(settings: Settings, mailbox: SyncMailbox, health: PushHealth | None) -> dict[str, Any] | None:
    """What the pane says about instant sync: None where it does not apply (push off, not Microsoft 365)."""
    if not kinds_for(settings, mailbox.provider) or not mailbox.activated:
        return None
    if health is None:
        return {"on": False, "reason": None, "since": None, "text": "Instant sync is starting"}
    since = datetime.fromtimestamp(health.since, tz=UTC).isoformat(timespec="seconds") if health.since else None
    if health.on:
        return {"on": True, "reason": None, "since": since, "text": "Instant sync on"}
    return {"on": False, "reason": health.reason or None, "since": since,
            "text": f"Instant sync off: {health.reason}" if health.reason else "Instant sync off"}
