"""The normalised items: participants are worked out once, and a changed copy has its own."""

from __future__ import annotations

import dataclasses

from backend.connectors.mailbox import Folder
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
