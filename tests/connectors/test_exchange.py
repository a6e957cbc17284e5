"""Exchange connector specifics: paging, the bounded first run, every vendor error, connect and Autodiscover."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from backend.config import Settings
from backend.connectors import MailboxContext, MailboxSecrets
from backend.connectors import exchange as ex
from backend.connectors.exchange.transport import Transport, account_for, retry_after
from backend.connectors.mailbox import ChangePage, Folder, SyncWindow
from backend.errors import AuthRevoked, SetupFailed, Throttled, Unavailable
from sandbox.ews import start_fake_ews
from sandbox.harness.exchange import ADDRESS, PASSWORD, ExchangeHarness, MemorySecretStore
from sandbox.tls import CertPair, TestCA

CUSTOMER = "carol@customer.example"


@pytest.fixture
def harness(ca: TestCA, server_cert: CertPair) -> Iterator[ExchangeHarness]:
    """The Exchange harness (NTLM and Basic offered)."""
    h = ExchangeHarness(ca.ca_path, server_cert)
    yield h
    h.close()


def _window(now: datetime | None = None) -> SyncWindow:
    return SyncWindow.starting(now or datetime.now(UTC), backfill_days=6)


def _pages(mailbox: Any, cursors: dict[str, str] | None = None, folders: tuple[Folder, ...] = tuple(Folder),
           now: datetime | None = None) -> list[ChangePage]:
    return list(mailbox.read_changes(cursors or {}, _window(now), folders))


def _mailbox(h: ExchangeHarness, settings: Settings | None = None, **connection: Any) -> ex.ExchangeMailbox:
    ctx = MailboxContext(settings=settings or h.settings(), mailbox_id="m1", address=ADDRESS,
                         connection={**h.connection(), **connection},
                         secrets=MailboxSecrets(MemorySecretStore(h.secrets()), "m1"))
    return ex.open_mailbox(ctx)


def _ops(h: ExchangeHarness, name: str) -> int:
    return h.state.operations.count(name)


def _dead_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


# ---- reading -------------------------------------------------------------------------------------
def test_sync_pages_512_changes_at_a_time(harness: ExchangeHarness) -> None:
    for n in range(1100):
        harness.add_email("inbox", subject=f"m{n}", sender=CUSTOMER, to=[ADDRESS], body=f"body {n}",
                          message_id=f"<m{n}@customer.example>")
    pages = _pages(_mailbox(harness), folders=(Folder.INBOX,))
    assert [len(p.emails) for p in pages] == [512, 512, 76]
    assert [p.last for p in pages] == [False, False, True]
    assert len({e.message_id for p in pages for e in p.emails}) == 1100
    assert len({p.cursor for p in pages}) == 3
    # One SyncFolderItems per page; GetItem fetches in chunks of 64 (8 + 8 + 2).
    assert _ops(harness, "SyncFolderItems") == 3
    assert _ops(harness, "GetItem") == 18
    assert all(c[0] == "GetItem" or "item:Body" not in c[1] for c in harness.state.requested_fields)


def test_first_run_is_bounded_by_the_window(harness: ExchangeHarness) -> None:
    now = datetime.now(UTC)
    for n in range(600):
        harness.add_email("inbox", subject=f"old{n}", sender=CUSTOMER, to=[ADDRESS], when=now - timedelta(days=30))
    for n in range(3):
        harness.add_email("inbox", subject=f"new{n}", sender=CUSTOMER, to=[ADDRESS], when=now - timedelta(hours=n))
    pages = _pages(_mailbox(harness), folders=(Folder.INBOX,), now=now)
    assert sorted(e.subject for p in pages for e in p.emails) == ["new0", "new1", "new2"]
    assert _ops(harness, "SyncFolderItems") == 2  # the whole folder is walked (ids and dates only)
    assert _ops(harness, "GetItem") == 1  # bodies only for the window
    sync_fields = {f for op, fields in harness.state.requested_fields if op == "SyncFolderItems" for f in fields}
    assert sync_fields == {"item:DateTimeReceived", "item:DateTimeSent"}


def test_a_half_done_first_run_keeps_its_window(harness: ExchangeHarness) -> None:
    now = datetime.now(UTC)
    for n in range(520):
        harness.add_email("inbox", subject=f"new{n}", sender=CUSTOMER, to=[ADDRESS], when=now - timedelta(hours=1))
    for n in range(5):
        harness.add_email("inbox", subject=f"old{n}", sender=CUSTOMER, to=[ADDRESS], when=now - timedelta(days=9))
    first_page = next(iter(_mailbox(harness).read_changes({}, _window(now), (Folder.INBOX,))))
    assert len(first_page.emails) == 512 and not first_page.last
    # The run died after the first page; days later the next run resumes from that page's cursor
    # with a later window that would include the old mail. The first run's window still applies.
    later = now + timedelta(days=5)
    rest = _pages(_mailbox(harness), {"inbox": first_page.cursor}, (Folder.INBOX,), now=later)
    assert sorted(e.subject for p in rest for e in p.emails) == sorted(f"new{n}" for n in range(512, 520))


def test_changes_to_mail_older_than_the_first_window_are_not_new_mail(harness: ExchangeHarness) -> None:
    now = datetime.now(UTC)
    old = harness.add_email("inbox", subject="old", sender=CUSTOMER, to=[ADDRESS], when=now - timedelta(days=30))
    cursors = {p.folder.value: p.cursor for p in _pages(_mailbox(harness), now=now)}
    harness.state.update_item(old, subject="old (flagged)")
    later = _pages(_mailbox(harness), cursors, now=now)
    assert [e for p in later for e in p.emails] == []


def test_recurring_series_are_read_as_their_occurrences_inside_the_window(harness: ExchangeHarness) -> None:
    now = datetime.now(UTC)
    harness.state.add_event(ADDRESS, subject="Weekly sync", start=now - timedelta(days=90),
                            end=now - timedelta(days=90, minutes=-30), organizer=CUSTOMER, attendees=[ADDRESS],
                            uid="weekly-uid", recurring=True)
    harness.state.add_event(ADDRESS, subject="Ended series", start=now - timedelta(days=90),
                            end=now - timedelta(days=90, minutes=-30), organizer=CUSTOMER, attendees=[ADDRESS],
                            recurring=True, recurrence_end=(now - timedelta(days=30)).date())
    events = [e for p in _pages(_mailbox(harness), folders=(Folder.CALENDAR,), now=now) for e in p.events]
    window = SyncWindow.starting(now, 30)
    first = now - timedelta(days=90)
    expected = [first + timedelta(days=n) for n in range(200)
                if first + timedelta(days=n, minutes=30) > window.events_from
                and first + timedelta(days=n) < window.events_to]
    # Daily, no end: one item per occurrence overlapping the window (as Graph's calendarView gives
    # them), keyed by UID + original start; the ended series is not read at all.
    assert {e.subject for e in events} == {"Weekly sync"} and all(e.is_recurring for e in events)
    assert sorted(e.dedup_key for e in events) == [f"weekly-uid@{s.strftime('%Y%m%dT%H%M%SZ')}" for s in expected]


def test_unreadable_cursor_resyncs_the_folder(harness: ExchangeHarness) -> None:
    harness.add_email("inbox", subject="hello", sender=CUSTOMER, to=[ADDRESS])
    pages = _pages(_mailbox(harness), {"inbox": "not-a-cursor"}, (Folder.INBOX,))
    assert [e.subject for p in pages for e in p.emails] == ["hello"] and all(p.resynced for p in pages)


@pytest.mark.parametrize(
    ("kind", "retry_after", "expected", "hint"),
    [
        ("throttle", 2.5, Throttled, 2.5),  # ErrorServerBusy with BackOffMilliseconds
        ("503", 42, Throttled, 42),  # 503 with Retry-After
        ("unavailable", 1, Unavailable, None),  # 502 from the proxy in front
        ("500", 1, Unavailable, None),  # an HTML error page
        ("not_ews", 1, Unavailable, None),  # a 200 that is not SOAP
        ("disconnect", 1, Unavailable, None),  # the connection drops
    ],
)
def test_vendor_errors_become_domain_errors(harness: ExchangeHarness, kind: str, retry_after: float,
                                            expected: type[Exception], hint: float | None) -> None:
    mailbox = _mailbox(harness)
    mailbox.identity()
    harness.inject_failure(kind, retry_after=retry_after)
    with pytest.raises(expected) as caught:
        _pages(mailbox)
    if hint is not None:
        assert caught.value.retry_after == pytest.approx(hint)  # type: ignore[attr-defined]
    assert "<html" not in str(caught.value)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("42", 42), (" 7 ", 7), ("0", None), ("-3", None), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None),
     (None, None)],
)
def test_retry_after_reads_delta_seconds_only(header: str | None, seconds: int | None) -> None:
    """The header rule exchangelib's own (private) helper applied: positive whole seconds, else no hint."""
    response = requests.Response()
    if header is not None:
        response.headers["Retry-After"] = header
    assert retry_after(response) == seconds


def test_rejected_password_is_auth_revoked(harness: ExchangeHarness) -> None:
    harness.revoke_credentials()
    with pytest.raises(AuthRevoked):
        _pages(_mailbox(harness))


def test_missing_password_is_auth_revoked(harness: ExchangeHarness) -> None:
    ctx = MailboxContext(settings=harness.settings(), mailbox_id="m1", address=ADDRESS,
                         connection=harness.connection(), secrets=MailboxSecrets(MemorySecretStore({}), "m1"))
    with pytest.raises(AuthRevoked):
        ex.open_mailbox(ctx)


def test_a_slow_server_times_out_as_unavailable(harness: ExchangeHarness) -> None:
    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(), "EWS_TIMEOUT_SECONDS": 1})
    mailbox = _mailbox(harness, settings)
    mailbox.identity()
    harness.inject_failure("delay", retry_after=3)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="in time"):
        _pages(mailbox)
    assert time.monotonic() - started < 2.9


def test_a_closed_port_is_unavailable(harness: ExchangeHarness) -> None:
    with pytest.raises(Unavailable, match="reached"):
        _pages(_mailbox(harness, ews_url=f"https://127.0.0.1:{_dead_port()}/EWS/Exchange.asmx",
                        settings=Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                                                "EWS_ALLOWED_HOSTS": "127.0.0.1"})))


def test_an_expired_certificate_is_unavailable(harness: ExchangeHarness, ca: TestCA) -> None:
    expired = ca.issue("ews-expired", not_before=datetime.now(UTC) - timedelta(days=10), days=1)
    state, server = start_fake_ews(expired)
    try:
        state.add_user(ADDRESS, PASSWORD, account="alice")
        settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                                  "EWS_ALLOWED_HOSTS": f"127.0.0.1:{server.port}"})
        with pytest.raises(Unavailable, match="certificate"):
            _pages(_mailbox(harness, settings, ews_url=f"{server.url}/EWS/Exchange.asmx"))
        assert state.operations == []
    finally:
        server.stop()


def test_a_host_that_is_no_longer_allowed_gets_no_request(harness: ExchangeHarness) -> None:
    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(), "EWS_ALLOWED_HOSTS": ""})
    with pytest.raises(Unavailable, match="not allowed"):
        _pages(_mailbox(harness, settings))
    assert harness.request_count() == 0


def test_no_protocol_stays_in_exchangelibs_process_cache(harness: ExchangeHarness) -> None:
    from exchangelib.protocol import CachingProtocol

    _pages(_mailbox(harness))
    ex.connect(harness.settings(), ADDRESS, PASSWORD, harness.ews_url)
    assert not any(key[0] == harness.ews_url for key in CachingProtocol._protocol_cache)


# ---- connect ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("methods", "login", "auth_type", "requests_made"),
    [
        # probe (401) + ConvertId through the NTLM handshake (3) + ResolveNames on the same connection
        (("NTLM", "Basic"), ADDRESS, "NTLM", 5),
        # ... + GetFolder: a DOMAIN\user login's mailbox is confirmed as the account's own
        (("NTLM", "Basic"), "ACME\\alice", "NTLM", 6),
        # probe (401) + ConvertId + ResolveNames, Basic credentials sent with each
        (("Basic",), ADDRESS, "basic", 3),
    ],
)
def test_connect_with_an_ews_url(ca: TestCA, server_cert: CertPair, methods: tuple[str, ...], login: str,
                                 auth_type: str, requests_made: int) -> None:
    h = ExchangeHarness(ca.ca_path, server_cert, auth_methods=methods)
    try:
        result = ex.connect(h.settings(), login, PASSWORD, h.ews_url)
        assert result.identity.primary == ADDRESS and result.identity.aliases == h.aliases
        assert result.auth_type == auth_type and result.version == "15.1.2507.6"
        assert result.ews_url == h.ews_url and not result.autodiscovered
        assert result.connection() == {"login": login, "ews_url": h.ews_url, "auth_type": auth_type,
                                       "version": "15.1.2507.6", "autodiscovered": False}
        confirm = ["GetFolder"] if "\\" in login else []
        assert h.state.operations == ["ConvertId", "ResolveNames", *confirm]
        assert h.request_count() == requests_made == result.calls
    finally:
        h.close()


def test_connect_accepts_a_bare_host_url(harness: ExchangeHarness) -> None:
    result = ex.connect(harness.settings(), ADDRESS, PASSWORD, harness.server.url)
    assert result.ews_url == harness.ews_url


def test_connect_through_autodiscover(harness: ExchangeHarness) -> None:
    result = ex.connect(harness.settings(), ADDRESS, PASSWORD)
    assert result.autodiscovered and result.ews_url == harness.ews_url
    assert harness.state.autodiscover_emails == [ADDRESS]
    assert harness.state.operations == ["Autodiscover", "ConvertId", "ResolveNames"]


def test_autodiscover_tries_the_next_candidate_and_uses_the_hint_for_domain_logins(harness: ExchangeHarness) -> None:
    dead = f"https://127.0.0.1:{_dead_port()}/autodiscover/autodiscover.xml"
    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                              "EWS_ALLOWED_HOSTS": "127.0.0.1",
                              "EWS_AUTODISCOVER_URLS": f"{dead},{harness.server.url}/autodiscover/autodiscover.xml"})
    result = ex.connect(settings, "ACME\\alice", PASSWORD, email_hint=ADDRESS)
    assert result.ews_url == harness.ews_url and harness.state.autodiscover_emails == [ADDRESS]


def test_autodiscover_follows_an_address_redirect(harness: ExchangeHarness) -> None:
    harness.state.autodiscover_redirect_addr["old.alice@acme.example"] = ADDRESS
    harness.state.add_user("old.alice@acme.example", PASSWORD, account="oldalice")
    result = ex.connect(harness.settings(), "old.alice@acme.example", PASSWORD)
    assert harness.state.autodiscover_emails == ["old.alice@acme.example", ADDRESS]
    assert result.ews_url == harness.ews_url


@pytest.mark.parametrize("target", ["https://10.1.2.3/autodiscover/autodiscover.xml",
                                    "https://169.254.169.254/latest/meta-data/",
                                    "http://{host}/autodiscover/autodiscover.xml"])
def test_autodiscover_redirects_to_refused_hosts_are_not_followed(harness: ExchangeHarness, target: str) -> None:
    harness.state.autodiscover_http_redirect = target.format(host=f"127.0.0.1:{harness.server.port}")
    with pytest.raises(SetupFailed) as caught:
        ex.connect(harness.settings(), ADDRESS, PASSWORD)
    assert caught.value.code == "host_not_allowed"
    assert harness.state.operations == ["Autodiscover"]


def test_autodiscover_without_an_answer_suggests_the_ews_url(harness: ExchangeHarness) -> None:
    # Autodiscover does not know the address: no EWS URL, and a hint to enter one.
    with pytest.raises(SetupFailed) as caught:
        ex.connect(harness.settings(), "ACME\\alice", PASSWORD, email_hint="unknown@acme.example")
    assert caught.value.code == "ews_unreachable" and "EWS URL" in caught.value.message
    # No candidate answers at all.
    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                              "EWS_ALLOWED_HOSTS": "127.0.0.1",
                              "EWS_AUTODISCOVER_URLS": f"https://127.0.0.1:{_dead_port()}/a.xml"})
    with pytest.raises(SetupFailed) as caught:
        ex.connect(settings, ADDRESS, PASSWORD)
    assert caught.value.code == "ews_unreachable" and "EWS URL" in caught.value.message


def test_a_wrong_password_stops_autodiscover_at_the_first_refusal(harness: ExchangeHarness) -> None:
    second = f"{harness.server.url}/autodiscover/autodiscover.xml"
    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                              "EWS_AUTODISCOVER_URLS": f"{second},{second}"})
    with pytest.raises(SetupFailed) as caught:
        ex.connect(settings, ADDRESS, "wrong-password")
    assert caught.value.code == "auth_failed"
    # One anonymous Autodiscover v2 GET per candidate (this server 404s them), then one NTLM
    # handshake (401, type 1, type 3 refused) at the first candidate: nothing more.
    calls = harness.server.recorder.calls
    assert [c.method for c in calls] == ["GET", "GET", "POST", "POST", "POST"]
    assert all("Authorization" not in c.headers for c in calls if c.method == "GET")


def _connect_error(h: ExchangeHarness, settings: Settings | None = None, login: str = ADDRESS,
                   password: str = PASSWORD, url: str | None = None, **kw: Any) -> SetupFailed:
    with pytest.raises(SetupFailed) as caught:
        ex.connect(settings or h.settings(), login, password, url or h.ews_url, **kw)
    return caught.value


def test_connect_wrong_password(harness: ExchangeHarness) -> None:
    error = _connect_error(harness, password="wrong")
    assert error.code == "auth_failed" and "wrong" not in error.message


@pytest.mark.parametrize(("kind", "code"), [("not_ews", "not_ews"), ("500", "ews_error"), ("503", "ews_error"),
                                           ("unavailable", "ews_error")])
def test_connect_to_something_that_is_not_a_working_ews(harness: ExchangeHarness, kind: str, code: str) -> None:
    harness.inject_failure(kind, times=20)
    assert _connect_error(harness).code == code


def test_connect_to_a_wrong_path_is_not_ews(harness: ExchangeHarness) -> None:
    assert _connect_error(harness, url=f"{harness.server.url}/owa/").code == "not_ews"


def test_connect_500_storm_after_the_probe(harness: ExchangeHarness) -> None:
    harness.inject_failure("delay", retry_after=0)  # the probe passes
    harness.inject_failure("500", times=20)
    assert _connect_error(harness).code == "ews_error"


def test_connect_times_out_within_the_deadline(harness: ExchangeHarness) -> None:
    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                              "EWS_TIMEOUT_SECONDS": 1})
    harness.inject_failure("delay", times=5, retry_after=2.5)
    started = time.monotonic()
    assert _connect_error(harness, settings).code == "timeout"
    assert time.monotonic() - started < 2.4


def test_connect_expired_certificate(harness: ExchangeHarness, ca: TestCA) -> None:
    expired = ca.issue("ews-expired-2", not_before=datetime.now(UTC) - timedelta(days=10), days=1)
    _, server = start_fake_ews(expired)
    try:
        settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                                  "EWS_ALLOWED_HOSTS": f"127.0.0.1:{server.port}"})
        error = _connect_error(harness, settings, url=f"{server.url}/EWS/Exchange.asmx")
        assert error.code == "tls_error"
        assert server.recorder.calls == []
    finally:
        server.stop()


def test_connect_unknown_host_and_private_host(harness: ExchangeHarness) -> None:
    def no_such_name(host: str, port: int) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    error = _connect_error(harness, url="https://exchange.acme.example/EWS/Exchange.asmx",
                           resolver=no_such_name)
    assert error.code == "ews_unreachable" and "More" in error.message

    def private(host: str, port: int) -> list[Any]:
        return [(socket.AF_INET, ("10.0.0.7", port))]

    error = _connect_error(harness, url="https://exchange.acme.example/EWS/Exchange.asmx",
                           resolver=private)
    assert error.code == "host_not_allowed"
    error = _connect_error(harness, url=f"https://127.0.0.1:{harness.server.port + 1}/EWS/Exchange.asmx")
    assert error.code == "host_not_allowed"
    assert harness.request_count() == 0


def test_connect_a_login_without_a_mailbox(harness: ExchangeHarness) -> None:
    # Authenticates, but the directory lookup finds nothing (hidden from address lists).
    harness.state.add_user("svc@acme.example", "svc-pw", account="svc").hidden = True
    error = _connect_error(harness, login="ACME\\svc", password="svc-pw")
    assert error.code == "mailbox_not_found" and "email address" in error.message


def test_connect_refuses_unsupported_sign_in_methods(ca: TestCA, server_cert: CertPair) -> None:
    h = ExchangeHarness(ca.ca_path, server_cert, auth_methods=())
    try:
        assert _connect_error(h).code == "ews_error"
    finally:
        h.close()


def _wire_secrets(h: ExchangeHarness, login: str, passwords: list[str]) -> set[str]:
    """Every form a password took on the wire: itself, Basic's base64 of login:password, and every
    Authorization token the fake received (Basic values and the NTLM negotiate/authenticate blobs)."""
    secrets = set(passwords)
    secrets |= {base64.b64encode(f"{login}:{p}".encode()).decode() for p in passwords}
    for call in h.server.recorder.calls:
        _, _, token = call.headers.get("Authorization", "").partition(" ")
        if token:
            secrets.add(token.strip())
            secrets.add(token.strip()[:40])  # a log line could hold a cut blob
    return secrets


def test_the_password_never_reaches_a_log_record(harness: ExchangeHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    harness.state.auth_methods = ("Basic",)
    ex.connect(harness.settings(), ADDRESS, PASSWORD, harness.ews_url)
    _pages(_mailbox(harness, auth_type="basic"))
    with pytest.raises(SetupFailed):
        ex.connect(harness.settings(), ADDRESS, PASSWORD + "-wrong", harness.ews_url)
    harness.state.auth_methods = ("NTLM",)
    ex.connect(harness.settings(), ADDRESS, PASSWORD, harness.ews_url)
    ex.connect(harness.settings(), ADDRESS, PASSWORD)  # Autodiscover too
    with pytest.raises(SetupFailed):
        ex.connect(harness.settings(), ADDRESS, PASSWORD + "-wrong", harness.ews_url)
    assert caplog.records
    secrets = _wire_secrets(harness, ADDRESS, [PASSWORD, PASSWORD + "-wrong"])
    schemes = {c.headers.get("Authorization", " ").split(" ")[0] for c in harness.server.recorder.calls}
    assert {"Basic", "NTLM"} <= schemes  # both kinds of credentials really went over the wire
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in logged
    vendors = ("exchangelib", "requests_ntlm", "spnego")
    for record in caplog.records:
        assert not (record.name.startswith(vendors) and record.levelno < logging.INFO)


def test_the_fake_serves_exchangelib_folder_queries(harness: ExchangeHarness) -> None:
    """GetFolder and FindItem (paging, a date restriction) answer exchangelib's own queries unchanged."""
    now = datetime.now(UTC)
    for n in range(5):
        harness.add_email("inbox", subject=f"recent {n}", sender=CUSTOMER, to=[ADDRESS], when=now - timedelta(hours=n))
    harness.add_email("inbox", subject="old", sender=CUSTOMER, to=[ADDRESS], when=now - timedelta(days=20))
    transport = Transport(harness.settings())
    protocol = transport.protocol(harness.ews_url, ADDRESS, PASSWORD, "NTLM", None)
    account = account_for(protocol, ADDRESS)
    try:
        inbox = account.inbox
        assert inbox.total_count == 6
        recent = list(inbox.filter(datetime_received__gte=now - timedelta(days=1)).only("subject").order_by(
            "-datetime_received"))
        assert [m.subject for m in recent] == [f"recent {n}" for n in range(5)]
        paged = list(inbox.all().only("subject").order_by("-datetime_received")[:6])
        assert len(paged) == 6
        assert "GetFolder" in harness.state.operations and "FindItem" in harness.state.operations
    finally:
        protocol.close()


# ---- which mailbox a DOMAIN\\user login is -------------------------------------------------------------
def test_a_domain_login_never_takes_a_look_alike_mailbox(harness: ExchangeHarness) -> None:
    # ACME\\alic signs in, but is hidden from the address book; ResolveNames("alic") finds only
    # "Alice Example" (a display-name prefix). That is not the signed-in account's mailbox.
    harness.state.add_user("alic.svc@acme.example", "alic-pw", account="alic", display_name="Svc").hidden = True
    error = _connect_error(harness, login="ACME\\alic", password="alic-pw")
    assert error.code == "mailbox_not_found" and "email address" in error.message
    assert harness.state.operations == ["ConvertId", "ResolveNames", "GetFolder"]


def test_a_domain_login_picks_its_own_mailbox_among_overlapping_names(harness: ExchangeHarness) -> None:
    harness.state.add_user("ann@acme.example", "ann-pw", account="ann", display_name="Ann Smith")
    harness.state.add_user("anna@acme.example", "anna-pw", account="ajones", display_name="Anna Jones")
    # ResolveNames("ann") matches both (account name and display-name prefixes).
    assert ex.connect(harness.settings(), "ACME\\ann", "ann-pw", harness.ews_url).identity.primary == \
        "ann@acme.example"
    assert ex.connect(harness.settings(), "ACME\\ajones", "anna-pw", harness.ews_url).identity.primary == \
        "anna@acme.example"
    # Anna is a delegate of nothing here: she can never come out as Ann, whatever the directory says.
    assert harness.state.operations.count("GetFolder") == 2


def test_the_connector_identity_uses_the_same_exact_check(harness: ExchangeHarness) -> None:
    harness.state.add_user("alic.svc@acme.example", "alic-pw", account="alic", display_name="Svc").hidden = True
    mailbox = ex.ExchangeMailbox(harness.settings(), ADDRESS, "ACME\\alic", "alic-pw", harness.ews_url, "NTLM",
                                 "15.1.2507.6")
    try:
        with pytest.raises(Unavailable, match="email address"):
            mailbox.identity()
    finally:
        mailbox.close()


# ---- where the password may go during Autodiscover -------------------------------------------------
NAMES = ("autodiscover.acme.example", "mail.acme.example", "evil.example")


@pytest.fixture
def named(ca: TestCA) -> Iterator[ExchangeHarness]:
    """The fake Exchange answering as autodiscover.acme.example, mail.acme.example and evil.example."""
    cert = ca.issue("ews-named", hosts=(*NAMES, "127.0.0.1", "localhost"))
    h = ExchangeHarness(ca.ca_path, cert)
    yield h
    h.close()


def _named_settings(h: ExchangeHarness, *templates: str) -> Settings:
    port = h.server.port
    urls = ",".join(t.format(port=port) for t in templates) or \
        f"https://autodiscover.{{domain}}:{port}/autodiscover/autodiscover.xml"
    # The allow list admits loopback *addresses* (the names resolve there in this test), so only the
    # login's domain is trusted with credentials by name.
    return Settings.load({"SIDEBAR_ENV": "development", **h.settings_overrides(), "EWS_ALLOWED_HOSTS": "127.0.0.1",
                          "EWS_AUTODISCOVER_URLS": urls})


def _names_resolver(host: str, port: int) -> list[Any]:
    if host in NAMES:
        return [(socket.AF_INET, ("127.0.0.1", port))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def _calls_to(h: ExchangeHarness, name: str) -> list[Any]:
    return [c for c in h.server.recorder.calls if c.headers.get("Host", "").split(":")[0] == name]


def _authorized(calls: list[Any]) -> list[Any]:
    return [c for c in calls if "Authorization" in c.headers]


def test_autodiscover_on_the_login_domain_succeeds(named: ExchangeHarness) -> None:
    result = ex.connect(_named_settings(named), ADDRESS, PASSWORD, resolver=_names_resolver)
    assert result.autodiscovered and result.ews_url == named.ews_url
    assert _authorized(_calls_to(named, "autodiscover.acme.example"))


@pytest.mark.parametrize("methods", [("NTLM", "Basic"), ("Basic",)])
def test_a_redirect_to_a_foreign_host_gets_no_credentials(named: ExchangeHarness, methods: tuple[str, ...]) -> None:
    named.state.auth_methods = methods
    named.state.autodiscover_http_redirect = f"https://evil.example:{named.server.port}/autodiscover/autodiscover.xml"
    with pytest.raises(SetupFailed) as caught:
        ex.connect(_named_settings(named), ADDRESS, PASSWORD, resolver=_names_resolver)
    assert caught.value.code == "ews_unreachable"
    if "NTLM" in methods:
        assert _authorized(_calls_to(named, "autodiscover.acme.example"))  # the redirect came after sign-in
    else:  # Basic is never used during Autodiscover (issue 18): no sign-in, so no redirect either
        assert _authorized(named.server.recorder.calls) == []
    assert _authorized(_calls_to(named, "evil.example")) == []
    assert _calls_to(named, "evil.example") == []  # not even the request body (it names the person)


def test_a_redirect_url_is_followed_only_within_the_login_domain(named: ExchangeHarness) -> None:
    port = named.server.port
    named.state.autodiscover_redirect_url[f"autodiscover.acme.example:{port}"] = \
        f"https://mail.acme.example:{port}/autodiscover/autodiscover.xml"
    result = ex.connect(_named_settings(named), ADDRESS, PASSWORD, resolver=_names_resolver)
    assert result.ews_url == named.ews_url
    assert _authorized(_calls_to(named, "mail.acme.example"))  # a subdomain of the login's domain: trusted

    named.server.recorder.reset()
    named.state.autodiscover_redirect_url[f"autodiscover.acme.example:{port}"] = \
        f"https://evil.example:{port}/autodiscover/autodiscover.xml"
    with pytest.raises(SetupFailed) as caught:
        ex.connect(_named_settings(named), ADDRESS, PASSWORD, resolver=_names_resolver)
    assert caught.value.code == "ews_unreachable"
    assert _calls_to(named, "evil.example") == []


def test_basic_is_never_sent_during_autodiscover(named: ExchangeHarness) -> None:
    # Issue 18: not even to the login's own domain (the bare domain is often someone else's website).
    named.state.auth_methods = ("Basic",)
    settings = _named_settings(named, "https://evil.example:{port}/autodiscover/autodiscover.xml",
                               "https://autodiscover.{{domain}}:{port}/autodiscover/autodiscover.xml")
    with pytest.raises(SetupFailed) as caught:
        ex.connect(settings, ADDRESS, PASSWORD, resolver=_names_resolver)
    assert caught.value.code == "ews_unreachable" and "Basic" in caught.value.message
    assert _calls_to(named, "evil.example") == []
    assert _authorized(named.server.recorder.calls) == []
    # With the EWS URL typed by the person, Basic is used there.
    result = ex.connect(settings, ADDRESS, PASSWORD, named.ews_url, resolver=_names_resolver)
    assert result.auth_type == "basic"


def test_an_address_redirect_to_another_domain_is_not_followed(harness: ExchangeHarness) -> None:
    harness.state.autodiscover_redirect_addr[ADDRESS] = "alice@other.example"
    with pytest.raises(SetupFailed) as caught:
        ex.connect(harness.settings(), ADDRESS, PASSWORD)
    assert caught.value.code == "ews_unreachable" and "EWS URL" in caught.value.message
    assert harness.state.autodiscover_emails == [ADDRESS]


def test_autodiscover_tries_the_autodiscover_host_before_the_bare_domain() -> None:
    urls = Settings.load({"SIDEBAR_ENV": "development"}).EWS_AUTODISCOVER_URLS
    assert urls == ("https://autodiscover.{domain}/autodiscover/autodiscover.xml",
                    "https://{domain}/autodiscover/autodiscover.xml")


# ---- never a hang ------------------------------------------------------------------------------------
DEADLINE = 3
MARGIN = 1.5


@pytest.mark.parametrize("with_url", [True, False], ids=["probe", "autodiscover"])
def test_connect_against_a_dripping_server_ends_at_the_deadline(harness: ExchangeHarness, with_url: bool) -> None:
    # One byte every half second: no read ever waits the 2 s read timeout, so only the attempt's
    # deadline can end it.
    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                              "EWS_TIMEOUT_SECONDS": 2, "EWS_CONNECT_DEADLINE_SECONDS": DEADLINE})
    # Without a URL the first request is the anonymous Autodiscover v2 GET, abandoned at its status.
    harness.inject_failure("drip", times=1 if with_url else 2, retry_after=0.5)
    started = time.monotonic()
    with pytest.raises(SetupFailed) as caught:
        ex.connect(settings, ADDRESS, PASSWORD, harness.ews_url if with_url else None)
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < DEADLINE + MARGIN


def test_connect_with_a_name_that_resolves_slowly_times_out(harness: ExchangeHarness) -> None:
    released = threading.Event()

    def slow_dns(host: str, port: int) -> list[Any]:
        released.wait(20)
        return [(socket.AF_INET, ("127.0.0.1", port))]

    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(),
                              "EWS_CONNECT_DEADLINE_SECONDS": 2, "EWS_ALLOWED_HOSTS": "127.0.0.1"})
    started = time.monotonic()
    try:
        error = _connect_error(harness, settings, url=f"https://mail.acme.example:{harness.server.port}/EWS/Exchange.asmx",
                               resolver=slow_dns)
    finally:
        released.set()
    assert error.code == "timeout"
    assert time.monotonic() - started < 2 + MARGIN
    assert harness.request_count() == 0


def test_a_sync_request_against_a_dripping_server_is_cut(harness: ExchangeHarness) -> None:
    # Sync runs have no overall deadline, but each request does (REQUEST_DEADLINE_FACTOR x 1 s).
    settings = Settings.load({"SIDEBAR_ENV": "development", **harness.settings_overrides(), "EWS_TIMEOUT_SECONDS": 1})
    mailbox = _mailbox(harness, settings)
    mailbox.identity()
    harness.inject_failure("drip", retry_after=0.3)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="in time"):
        _pages(mailbox)
    assert time.monotonic() - started < ex.REQUEST_DEADLINE_FACTOR * 1 + MARGIN
    # The connector works again on the next request (a new connection).
    assert _pages(mailbox, folders=(Folder.SENT,))


@pytest.mark.parametrize(("code", "outcome"), [
    ("ErrorItemCorrupt", "unreadable"), ("ErrorMimeContentConversionFailed", "unreadable"),
    ("ErrorBatchProcessingStopped", "not now"), ("ErrorServerBusy", "not now"), ("ErrorItemNotFound", "gone"),
])
def test_an_item_the_server_answers_with_an_error_is_never_dropped_silently(
        harness: ExchangeHarness, monkeypatch: pytest.MonkeyPatch, code: str, outcome: str) -> None:
    from sandbox.ews import operations as ops
    from sandbox.ews.soap import message

    bad = harness.add_email("inbox", subject="bad", sender=CUSTOMER, to=[ADDRESS], message_id="<bad@x>")
    harness.add_email("inbox", subject="good", sender=CUSTOMER, to=[ADDRESS], message_id="<good@x>")
    original = ops.EwsOperations._op_GetItem

    def one_item_fails(self: Any, user: Any, request: Any, messages: Any) -> Any:
        ids = request.find(ops.M + "ItemIds")
        for item_id in [i for i in ids if i.get("Id") == bad]:
            ids.remove(item_id)
            answer = message(messages, "GetItem", code, "the server says no")
            if code == "ErrorBatchProcessingStopped":
                answer.set("ResponseClass", "Warning")  # as Exchange sends it
        return original(self, user, request, messages)

    monkeypatch.setattr(ops.EwsOperations, "_op_GetItem", one_item_fails)
    if outcome == "not now":
        # The page is read again by the rerun (its sync state is not saved): nothing lost.
        with pytest.raises((Unavailable, Throttled)):  # exchangelib raises ErrorServerBusy itself
            _pages(_mailbox(harness), folders=(Folder.INBOX,))
        monkeypatch.setattr(ops.EwsOperations, "_op_GetItem", original)
        pages = _pages(_mailbox(harness), folders=(Folder.INBOX,))
        assert sorted(e.subject for p in pages for e in p.emails) == ["bad", "good"]
        return
    pages = _pages(_mailbox(harness), folders=(Folder.INBOX,))
    assert [e.subject for p in pages for e in p.emails] == ["good"]
    assert sum(p.unreadable for p in pages) == (1 if outcome == "unreadable" else 0)


def test_meetings_beyond_the_first_horizon_are_read_once_they_come_near(harness: ExchangeHarness) -> None:
    # Found in review: SyncFolderItems never reports again a meeting the first pass left beyond its
    # ceiling, nor a series' later occurrences; the horizon rolls forward as Graph's view does.
    now = datetime.now(UTC)
    harness.state.add_event(ADDRESS, subject="far", start=now + timedelta(days=120),
                            end=now + timedelta(days=120, hours=1), organizer=ADDRESS, attendees=[CUSTOMER])
    harness.state.add_event(ADDRESS, subject="Weekly", start=now - timedelta(days=1),
                            end=now - timedelta(days=1, minutes=-30), organizer=ADDRESS, attendees=[CUSTOMER],
                            uid="weekly-uid", recurring=True)
    first = _pages(_mailbox(harness), folders=(Folder.CALENDAR,), now=now)
    assert "far" not in {e.subject for p in first for e in p.events}
    first_last = max(e.start for p in first for e in p.events if e.subject == "Weekly" and e.start)
    cursors = {"calendar": [p.cursor for p in first if p.cursor][-1]}
    later = now + timedelta(days=60)
    second = _pages(_mailbox(harness), cursors, (Folder.CALENDAR,), now=later)
    events = [e for p in second for e in p.events]
    assert [e.subject for e in events if e.subject == "far"] == ["far"]
    weekly = sorted(e.start for e in events if e.subject == "Weekly" and e.start)
    assert weekly and weekly[0] > first_last and weekly[-1] > later + timedelta(days=80)
    # The same day again: the horizon is where the window ends, no roll (nor its two calls).
    cursors = {"calendar": [p.cursor for p in second if p.cursor][-1]}
    before = _ops(harness, "FindItem")
    third = _pages(_mailbox(harness), cursors, (Folder.CALENDAR,), now=later + timedelta(hours=2))
    assert [e for p in third for e in p.events] == [] and _ops(harness, "FindItem") == before


def test_a_meeting_the_roll_cannot_get_just_now_is_read_by_the_next_roll(
        harness: ExchangeHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.ews import operations as ops
    from sandbox.ews.soap import message

    now = datetime.now(UTC)
    far = harness.state.add_event(ADDRESS, subject="far", start=now + timedelta(days=120),
                                  end=now + timedelta(days=120, hours=1), organizer=ADDRESS, attendees=[CUSTOMER])
    first = _pages(_mailbox(harness), folders=(Folder.CALENDAR,), now=now)
    cursors = {"calendar": [p.cursor for p in first if p.cursor][-1]}
    original = ops.EwsOperations._op_GetItem

    def busy(self: Any, user: Any, request: Any, messages: Any) -> Any:
        ids = request.find(ops.M + "ItemIds")
        for item_id in [i for i in ids if i.get("Id") == far]:
            ids.remove(item_id)
            message(messages, "GetItem", "ErrorBatchProcessingStopped", "stopped").set("ResponseClass", "Warning")
        return original(self, user, request, messages)

    monkeypatch.setattr(ops.EwsOperations, "_op_GetItem", busy)
    with pytest.raises(Unavailable):
        _pages(_mailbox(harness), cursors, (Folder.CALENDAR,), now=now + timedelta(days=60))
    monkeypatch.setattr(ops.EwsOperations, "_op_GetItem", original)
    again = _pages(_mailbox(harness), cursors, (Folder.CALENDAR,), now=now + timedelta(days=60))
    assert [e.subject for p in again for e in p.events] == ["far"]
