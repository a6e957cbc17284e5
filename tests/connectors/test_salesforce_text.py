"""The Salesforce connector's pure helpers: SOQL literals and IN lists, field cutting, keys, reasons."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backend.connectors.crm import EventDraft, clip, join_addresses
from backend.connectors.salesforce.client import encode_body
from backend.connectors.salesforce.lookup import address_variants
from backend.connectors.salesforce.records import activity_key, event_unit, iso
from backend.connectors.salesforce.soql import (
    QUERY_SAFE,
    URI_MAX_CHARS,
    chunk_in_list,
    encode_query,
    encoded_length,
    query_url,
    soql_quote,
)
from backend.connectors.salesforce.writes import safe_reason
from sandbox.salesforce_rest import parse_soql

# --- SOQL --------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("plain", "'plain'"),
    ("o'brien@x.example", "'o\\'brien@x.example'"),
    ("back\\slash", "'back\\\\slash'"),
    ("line\nbreak", "'line\\nbreak'"),
    ('dq"uote', "'dq\\\"uote'"),
])
def test_soql_quote_escapes(value: str, expected: str) -> None:
    assert soql_quote(value) == expected
    # The fake's parser (Salesforce's grammar) reads the value back unchanged.
    parsed = parse_soql("SELECT Id FROM Contact WHERE Email = " + soql_quote(value))  # noqa: S608 - the test
    assert parsed.conditions[0][2] == value


def test_chunking_respects_uri_and_statement_limits() -> None:
    values = [f"person{i:05d}.with.a.long.name@company-{i % 97}.example" for i in range(3000)]
    path = "/services/data/v62.0/query"
    statements = chunk_in_list("SELECT Id FROM Contact WHERE Email IN ", values, path=path)
    assert len(statements) > 1
    seen: list[str] = []
    for soql in statements:
        url = query_url(path, soql)  # as sent: quotes, parentheses, commas and @ left as they are
        assert len(url) <= URI_MAX_CHARS
        assert len(soql) <= 100_000
        seen.extend(parse_soql(soql).conditions[0][2])
    assert seen == values  # nothing lost, nothing twice, order kept


@pytest.mark.parametrize("text", [
    "", "plain", "'<bench-1@customer.example>'", "a b", "100% ~_.-", "o'brien, (x)", "é", "日本語", "😀 mail",
    "&=+?#/", "\n\t\x00", "'<CAF=x+y/z@mail.gmail.com>'",
])
def test_encoded_length_and_the_query_are_what_urlencode_sends(text: str) -> None:
    from urllib.parse import quote_plus, urlencode

    assert encoded_length(text) == len(quote_plus(text, safe=QUERY_SAFE))
    assert encoded_length(text) == len(urlencode({"q": text}, safe=QUERY_SAFE)) - 2
    assert encode_query(text) == urlencode({"q": text}, safe=QUERY_SAFE)


def test_every_byte_is_encoded_as_urlencode_encodes_it() -> None:
    from urllib.parse import urlencode

    text = "".join(chr(c) for c in range(1, 0x800)) + "\U0001F600"
    assert encode_query(text) == urlencode({"q": text}, safe=QUERY_SAFE)


def test_chunking_cuts_at_the_uri_limit_exactly_for_values_that_need_encoding() -> None:
    # Spaces, non-ASCII and reserved characters encode to more than themselves: the cut must count them.
    values = [f"<id {i} é&x@host.example>" for i in range(2000)]
    path = "/services/data/v62.0/query"
    statements = chunk_in_list("SELECT Id FROM EmailMessage WHERE MessageIdentifier IN ", values, path=path)
    lengths = [len(query_url(path, soql)) for soql in statements]
    assert all(n <= URI_MAX_CHARS for n in lengths)
    # Each statement but the last is full: one more value would not have fitted.
    assert all(n > URI_MAX_CHARS - len(query_url(path, soql_quote(values[0]))) for n in lengths[:-1])


def test_chunking_single_value_longer_than_a_chunk_still_goes_alone() -> None:
    statements = chunk_in_list("SELECT Id FROM EmailMessage WHERE MessageIdentifier IN ", ["<a@b>", "x" * 20_000])
    assert len(statements) == 2


@pytest.mark.parametrize("text, limit, expected", [
    ("short", 10, "short"),
    ("exactly-10", 10, "exactly-10"),
    ("a" * 20, 10, "aaaa [...]"),
    ("\U0001F600" * 5, 10, "\U0001F600" * 5),  # an emoji is two units: 10 fit exactly
    ("\U0001F600" * 6, 10, "\U0001F600\U0001F600 [...]"),  # never half an emoji
    ("a\U0001F600" * 4, 10, "a\U0001F600a [...]"),
    ("", 5, ""),
    (None, 5, ""),
])
def test_clip(text: str | None, limit: int, expected: str) -> None:
    assert clip(text, limit) == expected
    assert len(clip(text, limit)) <= limit


def test_join_addresses_cuts_at_a_whole_address() -> None:
    addresses = [f"user{i}@example.com" for i in range(1000)]
    joined = join_addresses(addresses, 4000)
    assert len(joined) <= 4000
    assert joined.endswith("more)")
    kept = joined.rsplit("; (+", 1)[0].split("; ")
    assert all(a in addresses for a in kept)
    assert int(joined.rsplit("(+", 1)[1].split()[0]) == 1000 - len(kept)


def test_address_variants_cover_idna() -> None:
    assert address_variants("José@Exämple.com") >= {"josé@exämple.com", "josé@xn--exmple-cua.com"}
    assert address_variants("a@xn--exmple-cua.com") >= {"a@exämple.com"}


def test_activity_key_hashes_long_keys() -> None:
    assert activity_key("<short@x>") == "<short@x>"
    long_key = "<" + "x" * 300 + "@y>"
    assert activity_key(long_key).startswith("sha256:") and len(activity_key(long_key)) <= 255


def test_safe_reason_drops_echoed_values() -> None:
    reason = safe_reason({"statusCode": "STRING_TOO_LONG", "message": "Subject: data value too large: SECRET DEAL",
                          "fields": ["Subject"]})
    assert "SECRET" not in reason and reason.startswith("STRING_TOO_LONG")


def test_the_fake_salesforce_matches_an_in_list_without_regard_to_case_and_by_a_set() -> None:
    from sandbox.salesforce_rest.soql import InList, matches

    query = parse_soql("SELECT Id FROM EmailMessage WHERE MessageIdentifier IN ('<A@x>', '<b@x>')")
    (_name, op, values), = query.conditions
    assert op == "IN" and isinstance(values, InList)
    assert matches({"MessageIdentifier": "<a@X>"}, query.conditions)
    assert not matches({"MessageIdentifier": "<c@x>"}, query.conditions)
    assert not matches({}, query.conditions)


@pytest.mark.parametrize(("value", "expected"), [
    (datetime(2026, 12, 7, 14, 5, 9, 987654, tzinfo=UTC), "2026-12-07T14:05:09.000+0000"),
    (datetime(2026, 12, 7, 1, 5, 9, tzinfo=timezone(timedelta(hours=5, minutes=30))), "2026-12-06T19:35:09.000+0000"),
    (datetime(2026, 12, 31, 20, 0, 0, 1, tzinfo=timezone(timedelta(hours=-7))), "2027-01-01T03:00:00.000+0000"),
    (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05.000+0000"),
])
def test_date_times_are_written_in_utc_as_salesforce_writes_them(value: datetime, expected: str) -> None:
    assert iso(value) == expected


@pytest.mark.parametrize(("value", "sent"), [
    ("plain", "plain"), ("Ünïcödé ✓ 漢字", "Ünïcödé ✓ 漢字"), ("odd\udc80id", "odd?id"), ("\ud800", "?"),
])
def test_a_composite_body_always_encodes_and_a_lone_surrogate_becomes_a_question_mark(value: str, sent: str) -> None:
    body = {"compositeRequest": [{"body": {"records": [{"MessageIdentifier": value, "Subject": "s"}]}}]}
    decoded = json.loads(encode_body(body))
    assert decoded["compositeRequest"][0]["body"]["records"][0] == {"MessageIdentifier": sent, "Subject": "s"}


@pytest.mark.parametrize(("people", "related"), [
    (["00Q000000000001AAA", "003000000000001AAA"], ["00Q000000000001AAA"]),  # a lead and a contact
    (["00Q000000000001AAA", "00Q000000000002AAA"], ["00Q000000000001AAA"]),  # two leads
    ([f"003{n:012d}AAA" for n in range(51)], [f"003{n:012d}AAA" for n in range(50)]),  # 51 contacts
    ([f"003{n:012d}AAA" for n in range(3)], [f"003{n:012d}AAA" for n in range(3)]),  # contacts only
], ids=["lead+contact", "two-leads", "51-contacts", "contacts-only"])
def test_a_new_event_relates_no_more_than_shared_activities_allows(people: list[str], related: list[str]) -> None:
    """The connector's own guard (mapping already prefers Contacts): the first ones the rule allows, in order."""
    start = datetime(2026, 12, 10, 9, tzinfo=UTC)
    draft = EventDraft(key="UID-1", subject="Review", body="", location="", start=start,
                       end=start + timedelta(hours=1), is_all_day=False, people_ids=people)
    unit = event_unit(draft, "Sidebar_Key__c")
    assert [unit.record["WhoId"], *(r["RelationId"] for r in unit.relations if r["IsParent"])] == related
