"""What is never logged: the filters of a run, each with a reason that lands in the run's counts.

Defaults a sales team expects: free-mail domains blocked, internal-only mail skipped (the org's
internal domains, by default the user's own domain), private and confidential items never sent to
Salesforce, events over 24 hours skipped (Salesforce's limit is 14 days; the reference product
keeps to 24 hours), drafts skipped, and what to sync (emails, events) switchable. Org and user
blocklists hold addresses and domains (a domain also blocks its subdomains).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache

from backend.connectors.mailbox import Address, EmailItem, EventItem, Sensitivity

MAX_EVENT_DURATION = timedelta(hours=24)

# Free-mail providers: personal addresses, not the businesses a sales team sells to.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "yahoo.es", "yahoo.it",
    "yahoo.co.jp", "yahoo.com.br", "ymail.com", "rocketmail.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr",
    "hotmail.de", "hotmail.it", "hotmail.es", "outlook.com", "outlook.fr", "outlook.de", "live.com", "live.co.uk",
    "live.fr", "live.de", "msn.com", "passport.com", "aol.com", "aim.com", "icloud.com", "me.com", "mac.com",
    "gmx.com", "gmx.net", "gmx.de", "gmx.at", "gmx.ch", "web.de", "t-online.de", "freenet.de", "mail.com",
    "email.com", "usa.com", "mail.ru", "inbox.ru", "list.ru", "bk.ru", "yandex.ru", "yandex.com", "ya.ru",
    "proton.me", "protonmail.com", "protonmail.ch", "pm.me", "tutanota.com", "tuta.io", "zoho.com", "zohomail.com",
    "qq.com", "163.com", "126.com", "sina.com", "sohu.com", "naver.com", "daum.net", "hanmail.net",
    "rediffmail.com", "orange.fr", "wanadoo.fr", "free.fr", "laposte.net", "sfr.fr", "libero.it", "virgilio.it",
    "tiscali.it", "seznam.cz", "wp.pl", "o2.pl", "interia.pl", "onet.pl", "bol.com.br", "uol.com.br",
    "terra.com.br", "comcast.net", "verizon.net", "att.net", "sbcglobal.net", "bellsouth.net", "cox.net",
    "charter.net", "earthlink.net", "btinternet.com", "sky.com", "virginmedia.com", "ntlworld.com", "bigpond.com",
    "optusnet.com.au", "shaw.ca", "rogers.com", "sympatico.ca", "fastmail.com", "fastmail.fm", "hey.com",
    "hushmail.com", "lycos.com", "inbox.com", "mail.yahoo.com",
})


class Reason(StrEnum):
    """Why an item was not logged (keys of the run record's ``filtered`` counts)."""

    EMAILS_OFF = "emails_off"
    EVENTS_OFF = "events_off"
    PRIVATE = "private"
    DRAFT = "draft"
    BLOCKED = "blocked"  # on the person's own blocklist
    BLOCKED_ORG = "blocked_org"  # on the organisation's blocklist
    FREE_MAIL = "free_mail"
    INTERNAL = "internal"
    NO_PARTICIPANTS = "no_participants"
    TOO_LONG = "too_long"
    NO_START = "no_start"
    CANCELLED = "cancelled"
    NO_MATCH = "no_match"
    UNREADABLE = "unreadable"  # the mail server sent an item we could not read


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """A domain lower-cased in its ASCII (IDNA) form, so "exämple.com" and "xn--exmple-cua.com" compare equal."""
    value = domain.strip().strip(".").lower()
    try:
        return value.encode("idna").decode("ascii")
    except UnicodeError:
        return value


# Cached: a batch names the same few hundred addresses over and over, and the IDNA codec is slow
# (split_address was 390,000 calls, 40% of a 10,000-email run's own CPU).
@lru_cache(maxsize=16384)
def split_address(address: str) -> tuple[str, str]:
    """(local part, ASCII domain) of a lower-cased address."""
    local, _, domain = address.strip().lower().rpartition("@")
    return local, ascii_domain(domain)


def _domain_in(domain: str, domains: AbstractSet[str]) -> bool:
    """True when ``domain`` is one of ``domains`` or a subdomain of one."""
    # One set lookup per label of ``domain`` (a.b.example, b.example, example), not one
    # ``endswith`` per listed domain: the free-mail list alone has hundreds.
    while domain:
        if domain in domains:
            return True
        domain = domain.partition(".")[2]
    return False


@dataclass
class Blocklist:
    """Addresses and domains (a domain also covers its subdomains)."""

    addresses: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)

    @staticmethod
    def of(entries: Iterable[str]) -> Blocklist:
        """Parse blocklist entries ("x@acme.com", "acme.com", "@acme.com")."""
        result = Blocklist()
        for raw in entries:
            entry = str(raw).strip().lower().lstrip("@")
            if not entry:
                continue
            if "@" in entry:
                local, domain = split_address(entry)
                result.addresses.add(f"{local}@{domain}")
            else:
                result.domains.add(ascii_domain(entry))
        return result

    def blocks(self, address: str) -> bool:
        """True when the address or its domain is blocked."""
        local, domain = split_address(address)
        return f"{local}@{domain}" in self.addresses or _domain_in(domain, self.domains)


# A run's filters remember each address's verdict (a 10,000-email backfill asks about the same few
# hundred addresses 500,000 times); past this many they start over, so memory stays bounded.
VERDICTS_MAX = 65_536


@dataclass(frozen=True)
class Verdict:
    """What the filters say about one address."""

    internal: bool  # the owner or a colleague
    blocked_org: bool  # on the org's blocklist
    blocked: bool  # on the org's or the person's blocklist
    free_mail: bool  # at a free-mail provider

    def matchable(self, block_free_mail: bool) -> bool:
        """Worth looking up in the CRM: external, not blocked, not free mail when that is blocked."""
        return not (self.internal or self.blocked or (block_free_mail and self.free_mail))


@dataclass(frozen=True)
class Filters:
    """The filters of one run: the mailbox owner, the org's and user's settings (never changed once built)."""

    own_addresses: frozenset[str]
    internal_domains: frozenset[str]
    blocklist: Blocklist
    block_free_mail: bool = True
    # The org's part of ``blocklist``: what no single person's choice (Log it now) overrides.
    org_blocklist: Blocklist = field(default_factory=Blocklist)
    sync_emails: bool = True
    sync_events: bool = True
    _verdicts: dict[str, Verdict] = field(default_factory=dict, init=False, repr=False, compare=False)

    @staticmethod
    def build(
        own_addresses: Iterable[str],
        org_internal_domains: Iterable[str],
        org_blocklist: Iterable[str],
        user_blocklist: Iterable[str],
        block_free_mail: bool = True,
        sync_emails: bool = True,
        sync_events: bool = True,
    ) -> Filters:
        """Filters for a mailbox; internal domains default to the domains of the mailbox's own addresses."""
        own = frozenset(f"{loc}@{dom}" for loc, dom in (split_address(a) for a in own_addresses if "@" in a))
        internal = {ascii_domain(d.lstrip("@")) for d in org_internal_domains if d.strip()}
        if not internal:
            internal = {dom for _, dom in (split_address(a) for a in own)}
        # A free-mail domain is never "internal", even for someone whose own mailbox is on one.
        internal -= FREE_MAIL_DOMAINS
        return Filters(
            own_addresses=own,
            internal_domains=frozenset(internal),
            blocklist=Blocklist.of([*org_blocklist, *user_blocklist]),
            block_free_mail=block_free_mail,
            org_blocklist=Blocklist.of(org_blocklist),
            sync_emails=sync_emails,
            sync_events=sync_events,
        )

    def for_one_item(self) -> Filters:
        """The filters of "Log it now": the person's own choices give way, privacy and the org's blocklist do not."""
        return Filters(own_addresses=self.own_addresses, internal_domains=self.internal_domains,
                       blocklist=self.org_blocklist, block_free_mail=False, sync_emails=True, sync_events=True,
                       org_blocklist=self.org_blocklist)

    def waived(self) -> frozenset[Reason]:
        """The reasons these filters never give, because a choice they hold is off (what Log it now sets aside)."""
        off = {Reason.EMAILS_OFF: self.sync_emails, Reason.EVENTS_OFF: self.sync_events,
               Reason.FREE_MAIL: not self.block_free_mail,
               # With only the org's blocklist, a blocked address is blocked_org, never "blocked".
               Reason.BLOCKED: self.blocklist == self.org_blocklist}
        return frozenset(reason for reason, never in off.items() if never)

    def is_own(self, address: str) -> bool:
        """True for the mailbox's own address or an alias."""
        local, domain = split_address(address)
        return f"{local}@{domain}" in self.own_addresses

    def is_internal(self, address: str) -> bool:
        """True for a colleague (an internal domain) or the owner."""
        return self.is_own(address) or _domain_in(split_address(address)[1], self.internal_domains)

    def is_free_mail(self, address: str) -> bool:
        """True for an address at a free-mail provider."""
        return _domain_in(split_address(address)[1], FREE_MAIL_DOMAINS)

    def verdict(self, address: str) -> Verdict:
        """What these filters say about ``address`` (worked out once per address and run)."""
        found = self._verdicts.get(address)
        if found is None:
            if len(self._verdicts) >= VERDICTS_MAX:
                self._verdicts.clear()
            found = Verdict(internal=self.is_internal(address), blocked_org=self.org_blocklist.blocks(address),
                            blocked=self.blocklist.blocks(address), free_mail=self.is_free_mail(address))
            self._verdicts[address] = found
        return found

    def is_matchable(self, address: str) -> bool:
        """True when ``address`` is worth looking up in the CRM (see :meth:`matchable`)."""
        return self.verdict(address).matchable(self.block_free_mail)

    def external(self, participants: Iterable[Address]) -> list[str]:
        """Addresses that are neither the owner nor colleagues."""
        return [p.email for p in participants if not self.verdict(p.email).internal]

    def matchable(self, participants: Iterable[Address]) -> list[str]:
        """External addresses worth looking up in the CRM (not blocked, not free mail when that is blocked)."""
        return [p.email for p in participants if self.is_matchable(p.email)]

    def _people_reason(self, participants: tuple[Address, ...]) -> Reason | None:
        if not participants:
            return Reason.NO_PARTICIPANTS
        external = [v for v in (self.verdict(p.email) for p in participants) if not v.internal]
        if not external:
            return Reason.INTERNAL
        # Any blocked participant keeps the whole item out: a blocklist is a privacy promise.
        if any(v.blocked_org for v in external):
            return Reason.BLOCKED_ORG
        if any(v.blocked for v in external):
            return Reason.BLOCKED
        if self.block_free_mail and all(v.free_mail for v in external):
            return Reason.FREE_MAIL
        return None

    def email(self, item: EmailItem) -> Reason | None:
        """Why an email is not logged, or None to go on (matching may still find nobody)."""
        if not self.sync_emails:
            return Reason.EMAILS_OFF
        if item.sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL):
            return Reason.PRIVATE
        if item.is_draft:
            return Reason.DRAFT
        return self._people_reason(item.participants)

    def event(self, item: EventItem) -> Reason | None:
        """Why an event is not logged, or None to go on."""
        if not self.sync_events:
            return Reason.EVENTS_OFF
        if item.sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL):
            return Reason.PRIVATE
        if item.start is None:
            return Reason.NO_START
        duration = item.duration
        if duration is not None and duration > MAX_EVENT_DURATION:
            return Reason.TOO_LONG
        return self._people_reason(item.participants)
