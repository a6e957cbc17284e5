"""Filters: every item either goes on or is filtered with a reason."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.connectors.mailbox import Sensitivity
from backend.sync.filters import Blocklist, Filters, Reason, ascii_domain
from tests.sync.items import NOW, OWNER, mail, meeting


def filters(**kwargs: object) -> Filters:
    """Filters for the owner's mailbox with org/user settings overridden."""
    args: dict[str, object] = {"own_addresses": [OWNER, "r.ep@acme.example"], "org_internal_domains": [],
                               "org_blocklist": [], "user_blocklist": []}
    args.update(kwargs)
    return Filters.build(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("item, reason", [
    (mail(), None),
    (mail(sender="Bob@CUSTOMER.example"), None),
    (mail(sender="colleague@acme.example"), Reason.INTERNAL),
    (mail(sender="colleague@sub.acme.example"), Reason.INTERNAL),
    (mail(sender=OWNER, to=("r.ep@acme.example",)), Reason.INTERNAL),
    (mail(sender="friend@gmail.com"), Reason.FREE_MAIL),
    (mail(sender="friend@GMAIL.COM", cc=("x@hotmail.com",)), Reason.FREE_MAIL),
    (mail(sender="friend@gmail.com", cc=("buyer@customer.example",)), None),
    (mail(sensitivity=Sensitivity.PRIVATE), Reason.PRIVATE),
    (mail(sensitivity=Sensitivity.CONFIDENTIAL), Reason.PRIVATE),
    (mail(sensitivity=Sensitivity.PERSONAL), None),
    (mail(draft=True), Reason.DRAFT),
    (mail(sender="", to=()), Reason.NO_PARTICIPANTS),
])
def test_email_filters(item: object, reason: Reason | None) -> None:
    assert filters().email(item) is reason  # type: ignore[arg-type]


@pytest.mark.parametrize("entries, sender, blocked", [
    (["bob@customer.example"], "BOB@customer.example", True),
    (["customer.example"], "bob@customer.example", True),
    (["@customer.example"], "bob@eu.customer.example", True),
    (["customer.example"], "bob@notcustomer.example", False),
    (["customer.example"], "bob@a.b.customer.example", True),
    (["eu.customer.example"], "bob@customer.example", False),
    (["exämple.com"], "bob@xn--exmple-cua.com", True),
    (["xn--exmple-cua.com"], "bob@exämple.com", True),
    ([], "bob@customer.example", False),
])
def test_blocklists(entries: list[str], sender: str, blocked: bool) -> None:
    assert Blocklist.of(entries).blocks(sender) is blocked
    expected = Reason.BLOCKED if blocked else None
    assert filters(user_blocklist=entries).email(mail(sender=sender)) is expected
    assert filters(org_blocklist=entries).email(mail(sender=sender)) is (Reason.BLOCKED_ORG if blocked else None)


def test_one_blocked_participant_keeps_the_whole_email_out() -> None:
    item = mail(sender="bob@customer.example", cc=("lawyer@firm.example",))
    assert filters(user_blocklist=["firm.example"]).email(item) is Reason.BLOCKED


def test_org_internal_domains_replace_the_default() -> None:
    f = filters(org_internal_domains=["acme.example", "acme-group.example"])
    assert f.email(mail(sender="x@acme-group.example")) is Reason.INTERNAL
    assert f.email(mail(sender="x@customer.example")) is None


def test_free_mail_can_be_allowed_by_the_org() -> None:
    assert filters(block_free_mail=False).email(mail(sender="friend@gmail.com")) is None


def test_free_mail_owner_domain_is_not_internal() -> None:
    f = Filters.build(["someone@gmail.com"], [], [], [])
    assert not f.is_internal("other@gmail.com")
    assert f.email(mail(sender="other@gmail.com", to=("someone@gmail.com",))) is Reason.FREE_MAIL


def test_switches() -> None:
    assert filters(sync_emails=False).email(mail()) is Reason.EMAILS_OFF
    assert filters(sync_events=False).event(meeting()) is Reason.EVENTS_OFF


@pytest.mark.parametrize("item, reason", [
    (meeting(), None),
    (meeting(hours=24), None),
    (meeting(hours=24.5), Reason.TOO_LONG),
    (meeting(hours=24 * 15), Reason.TOO_LONG),
    (meeting(hours=None), None),  # no end: a point in time
    (meeting(start=None), Reason.NO_START),
    (meeting(sensitivity=Sensitivity.PRIVATE), Reason.PRIVATE),
    (meeting(attendees=("colleague@acme.example",)), Reason.INTERNAL),
    (meeting(attendees=()), Reason.INTERNAL),
])
def test_event_filters(item: object, reason: Reason | None) -> None:
    assert filters().event(item) is reason  # type: ignore[arg-type]


def test_matchable_excludes_owner_colleagues_blocked_and_free_mail() -> None:
    item = mail(sender="bob@customer.example", to=(OWNER, "colleague@acme.example", "friend@gmail.com",
                                                   "Carol@Prospect.example"))
    assert sorted(filters().matchable(item.participants)) == ["bob@customer.example", "carol@prospect.example"]


def test_thousands_of_recipients() -> None:
    item = mail(to=tuple(f"r{i}@customer.example" for i in range(5000)))
    assert filters().email(item) is None
    assert len(filters().matchable(item.participants)) == 5001


@pytest.mark.parametrize("raw, expected", [("Exämple.COM", "xn--exmple-cua.com"), ("acme.example.", "acme.example"),
                                           ("bad..domain", "bad..domain")])
def test_ascii_domain(raw: str, expected: str) -> None:
    assert ascii_domain(raw) == expected


def test_duration_property_used() -> None:
    item = meeting(hours=2)
    assert item.duration == timedelta(hours=2) and item.start == NOW


class _CountingSet(frozenset[str]):
    """A frozenset that counts membership tests."""

    asked = 0

    def __contains__(self, value: object) -> bool:
        type(self).asked += 1
        return super().__contains__(value)


def test_a_domain_costs_one_set_lookup_per_label_not_one_comparison_per_listed_domain() -> None:
    from backend.sync import filters as module

    listed = _CountingSet({f"d{i}.example" for i in range(5000)} | {"customer.example"})
    _CountingSet.asked = 0
    assert module._domain_in("a.b.customer.example", listed)
    assert not module._domain_in("x.y.other.example", listed)
    # a.b.customer.example, b.customer.example, customer.example; then 4 labels of the miss.
    assert _CountingSet.asked == 3 + 4


@pytest.mark.parametrize("address", [
    "bob@customer.example", OWNER, "r.ep@acme.example", "colleague@sub.acme.example", "friend@gmail.com",
    "boss@blocked.example", "x@org-blocked.example", "me@blocked-person.example", "Carol@Prospect.example",
])
@pytest.mark.parametrize("block_free_mail", [True, False])
def test_a_remembered_verdict_is_the_one_worked_out_afresh(address: str, block_free_mail: bool) -> None:
    made = filters(user_blocklist=["blocked.example", "me@blocked-person.example"],
                   org_blocklist=["org-blocked.example"], block_free_mail=block_free_mail)
    email = address.lower()
    expected = (not made.is_internal(email) and not made.blocklist.blocks(email)
                and not (block_free_mail and made.is_free_mail(email)))
    first = made.is_matchable(email)
    again = made.is_matchable(email)  # from the memo
    assert first is again is expected
    item = mail(sender=address)
    assert made.email(item) is filters(user_blocklist=["blocked.example", "me@blocked-person.example"],
                                       org_blocklist=["org-blocked.example"],
                                       block_free_mail=block_free_mail).email(item)


def test_an_address_is_judged_once_per_run_and_the_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.sync import filters as module

    made = filters()
    calls: list[str] = []
    original = Filters.is_internal

    def counting(self: Filters, address: str) -> bool:
        calls.append(address)
        return original(self, address)

    monkeypatch.setattr(Filters, "is_internal", counting)
    item = mail(sender="bob@customer.example", cc=("carol@prospect.example",))
    for _ in range(50):
        made.email(item)
        made.matchable(item.participants)
    assert sorted(set(calls)) == sorted(calls)  # each address worked out once
    monkeypatch.setattr(module, "VERDICTS_MAX", 3)
    for i in range(10):
        made.is_matchable(f"p{i}@customer.example")
    assert len(made._verdicts) <= 3


def test_the_memo_is_not_part_of_a_filters_identity() -> None:
    one, two = filters(), filters()
    one.is_matchable("bob@customer.example")
    assert one == two
