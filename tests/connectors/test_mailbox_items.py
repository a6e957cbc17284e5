"""The normalised items: participants are worked out once, and a changed copy has its own."""

from __future__ import annotations

import dataclasses

import pytest

from backend.connectors.mailbox import Address, Folder, normalise_message_id
from tests.sync.items import addr, mail, meeting


def test_participants_are_kept_and_a_replaced_copy_works_them_out_again() -> None:
    item = mail(sender="bob@customer.example", to=("rep@acme.example",), cc=("bob@customer.example",))
    first = item.participants
    assert [a.email for a in first] == ["bob@customer.example", "rep@acme.example"]
    assert item.participants is first  # remembered, not rebuilt on each ask
    moved = dataclasses.replace(item, folder=Folder.SENT, cc=(addr("carol@prospect.example"),))
    assert [a.email for a in moved.participants] == ["bob@customer.example", "rep@acme.example",
                                                     "carol@prospect.example"]
    assert item == dataclasses.replace(item)  # the remembered tuple is not part of the item's value


def test_event_participants_follow_the_attendees_of_each_copy() -> None:
    event = meeting(attendees=("carol@prospect.example",))
    assert "carol@prospect.example" in [a.email for a in event.participants]
    changed = dataclasses.replace(event, attendees=(addr("dave@partner.example"),))
    emails = [a.email for a in changed.participants]
    assert "dave@partner.example" in emails and "carol@prospect.example" not in emails


@pytest.mark.parametrize(("raw", "clean"), [
    ("<a@customer.example>", "<a@customer.example>"), ("<é@customer.example>", "<é@customer.example>"),
    ("<odd\udc80id@customer.example>", "<odd?id@customer.example>"), (" odd\ud800@x.example ", "<odd?@x.example>"),
])
def test_ids_and_addresses_hold_no_lone_surrogate(raw: str, clean: str) -> None:
    assert normalise_message_id(raw) == clean
    clean.encode("utf-8")  # keys, hashes and JSON all encode it
    address = Address.of(raw.strip(" <>"), "Na\udc80me")
    assert address is not None and address.email == clean.strip("<>").lower() and address.name == "Na?me"
