"""Local sandbox services for development: the protocol-level fakes, seeded with demo data.

``scripts/dev`` starts them when no Salesforce credentials are configured, so a newcomer can open
the task pane, log in, connect a mailbox (Exchange with a password, Microsoft 365 or Gmail by consent)
and watch sync log demo emails in the sandbox Salesforce, all without an account anywhere. They
are the same fakes the tests use; only the ports are fixed and the data is a demo. The three demo
mailboxes carry the same mail and meeting (same Message-IDs, same iCalUID), so switching provider
logs nothing twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sandbox import google as fake_google
from sandbox import microsoft as fake_ms
from sandbox import salesforce as fake_sf
from sandbox.ews import EWS_PATH, FakeEws, FakeEwsState, KeepAliveFakeServer
from sandbox.gmail import FakeGmailState
from sandbox.google_calendar import FakeCalendarState
from sandbox.graph import FakeGraphState, recorded_app
from sandbox.salesforce_rest import data_of
from sandbox.server import FakeServer
from sandbox.tls import CertPair

SALESFORCE_PORT = 3001
MICROSOFT_PORT = 3002
GRAPH_PORT = 3003
EWS_PORT = 3004
GOOGLE_PORT = 3005
DEMO_USER = "demo@sidebar-sync.example"
DEMO_PASSWORD = "demo"
# People the demo mailbox corresponds with: Contacts and a Lead in the sandbox Salesforce, and a
# free-mail sender that the default filters keep out.
CONTACTS = ("ana.lopez@northwind.example", "ben.okafor@contoso-traders.example")
LEADS = ("chloe.martin@fabrikam-labs.example",)
FREE_MAIL = "someone@gmail.com"
MEETING_UID = "sidebar-demo-quarterly-review@sidebar-sync.example"


class Sandbox:
    """The sandbox services on fixed localhost ports."""

    def __init__(self, cert_path: str, key_path: str) -> None:
        self.cert = CertPair(cert_path, key_path)
        self.salesforce = fake_sf.FakeSalesforceState()
        self.salesforce.add_user(DEMO_USER, DEMO_PASSWORD, email=DEMO_USER, name="Demo User", is_admin=True)
        self.microsoft = fake_ms.FakeMicrosoftState()
        self.microsoft.add_user(DEMO_USER, display_name="Demo User")
        self.graph = FakeGraphState(self.microsoft)
        self.ews = FakeEwsState()
        self.ews.add_user(DEMO_USER, DEMO_PASSWORD, account="demo", domain="SANDBOX", display_name="Demo User")
        self.google = fake_google.FakeGoogleState()
        self.google.add_user(DEMO_USER, display_name="Demo User")
        self.gmail = FakeGmailState(self.google)
        self.calendar = FakeCalendarState(self.google, faults=self.gmail.faults)
        self.servers: list[FakeServer] = []

    def _seed(self) -> None:
        people = data_of(self.salesforce)
        for index, email in enumerate(CONTACTS):
            people.add_contact(email, last_name=("Lopez", "Okafor")[index])
        for email in LEADS:
            people.add_lead(email, last_name="Martin")
        now = datetime.now(tz=UTC)
        mails = [
            ("inbox", "Pricing for the northern region", CONTACTS[0], [DEMO_USER], now - timedelta(hours=3)),
            ("inbox", "Re: trial extension", LEADS[0], [DEMO_USER], now - timedelta(days=1)),
            ("sent", "Proposal attached", DEMO_USER, [CONTACTS[1]], now - timedelta(hours=20)),
            ("inbox", "Weekend plans", FREE_MAIL, [DEMO_USER], now - timedelta(hours=5)),
        ]
        # One mailbox read two ways: the Exchange and Microsoft 365 copies carry the same Message-IDs
        # and UID, so connecting one, then the other, logs nothing twice (dedup in Salesforce).
        for index, (folder, subject, sender, to, when) in enumerate(mails):
            body = f"{subject}. (Sandbox demo message.)"
            message_id = f"<sidebar-demo-{index}@sidebar-sync.example>"
            self.graph.add_message(DEMO_USER, folder, subject=subject, sender=sender, to=to, body=body, when=when,
                                   message_id=message_id)
            self.ews.add_email(DEMO_USER, "sentitems" if folder == "sent" else "inbox", subject=subject,
                               sender=sender, to=to, body=body, when=when, message_id=message_id)
            self.gmail.add_message(DEMO_USER, ["SENT"] if folder == "sent" else ["INBOX", "UNREAD"],
                                   subject=subject, sender=sender, to=to, body=body, when=when,
                                   message_id=message_id)
        start = (now + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
        # One iCalUID in every demo calendar, as the same meeting has at every provider.
        self.graph.add_event(DEMO_USER, subject="Quarterly review", start=start, end=end, organizer=DEMO_USER,
                             attendees=[CONTACTS[0]], uid=MEETING_UID)
        self.ews.add_event(DEMO_USER, subject="Quarterly review", start=start, end=end, organizer=DEMO_USER,
                           attendees=[CONTACTS[0]], uid=MEETING_UID)
        self.calendar.add_event(DEMO_USER, subject="Quarterly review", start=start, end=end, organizer=DEMO_USER,
                                attendees=[CONTACTS[0]], uid=MEETING_UID)

    def start(self) -> Sandbox:
        """Start every service and seed the demo data."""
        for state, app, port in (
            (self.salesforce, fake_sf.create_app(self.salesforce), SALESFORCE_PORT),
            (self.microsoft, fake_ms.create_app(self.microsoft), MICROSOFT_PORT),
            (self.graph, recorded_app(self.graph), GRAPH_PORT),
        ):
            self.servers.append(FakeServer(app, self.cert, port=port).start())  # type: ignore[arg-type]
            state.base_url = f"https://localhost:{port}"
        google_app = fake_google.create_app(self.google, self.gmail, self.calendar)
        self.servers.append(FakeServer(google_app, self.cert, port=GOOGLE_PORT).start())  # type: ignore[arg-type]
        for google_state in (self.google, self.gmail, self.calendar):
            google_state.base_url = f"https://localhost:{GOOGLE_PORT}"
        self.servers.append(KeepAliveFakeServer(FakeEws(self.ews), self.cert, port=EWS_PORT).start())
        self.ews.base_url = f"https://localhost:{EWS_PORT}"
        self.ews.ews_url = f"{self.ews.base_url}{EWS_PATH}"
        self._seed()
        return self

    def settings(self) -> dict[str, str]:
        """Environment for the app so it uses the sandbox."""
        return {
            "SALESFORCE_CLIENT_ID": self.salesforce.client_id,
            "SALESFORCE_CLIENT_SECRET": self.salesforce.client_secret,
            "SALESFORCE_LOGIN_URL": f"https://localhost:{SALESFORCE_PORT}",
            "SALESFORCE_SANDBOX_URL": f"https://localhost:{SALESFORCE_PORT}",
            "SALESFORCE_ALLOWED_HOSTS": f"localhost:{SALESFORCE_PORT}",
            "MS_CLIENT_ID": self.microsoft.client_id,
            "MS_CLIENT_SECRET": self.microsoft.client_secret,
            "MS_AUTHORITY": f"https://localhost:{MICROSOFT_PORT}/organizations",
            "GRAPH_URL": f"https://localhost:{GRAPH_PORT}",
            "GOOGLE_CLIENT_ID": self.google.client_id,
            "GOOGLE_CLIENT_SECRET": self.google.client_secret,
            "GOOGLE_AUTH_URL": f"https://localhost:{GOOGLE_PORT}/o/oauth2/v2/auth",
            "GOOGLE_TOKEN_URL": f"https://localhost:{GOOGLE_PORT}/token",
            "GOOGLE_REVOKE_URL": f"https://localhost:{GOOGLE_PORT}/revoke",
            "GMAIL_API_URL": f"https://localhost:{GOOGLE_PORT}",
            "GOOGLE_CALENDAR_API_URL": f"https://localhost:{GOOGLE_PORT}/calendar/v3",
            # The sandbox Exchange runs on loopback, which the EWS host guard refuses unless admitted.
            "EWS_ALLOWED_HOSTS": f"localhost:{EWS_PORT},127.0.0.1:{EWS_PORT}",
            "EWS_AUTODISCOVER_URLS": f"https://localhost:{EWS_PORT}/autodiscover/autodiscover.xml",
        }

    def describe(self) -> list[str]:
        """Lines telling a developer what runs where and how to log in."""
        return [
            f"Salesforce      https://localhost:{SALESFORCE_PORT}  log in as {DEMO_USER} / {DEMO_PASSWORD}",
            f"Microsoft 365   https://localhost:{MICROSOFT_PORT} (sign-in) and :{GRAPH_PORT} (Graph): "
            f"Connect Microsoft 365, sign in as {DEMO_USER}",
            f"Gmail           https://localhost:{GOOGLE_PORT} (Google sign-in, Gmail, Calendar): "
            f"Connect Gmail, sign in as {DEMO_USER}",
            f"Exchange        https://localhost:{EWS_PORT}{EWS_PATH}: Connect to Exchange as "
            f"{DEMO_USER} / {DEMO_PASSWORD}",
            f"The add-in mailbox outside Outlook: enter {DEMO_USER} when the pane asks",
            f"Logged so far   https://localhost:{SALESFORCE_PORT}/sandbox/logged  (what sync wrote, read-only)",
        ]

    def stop(self) -> None:
        """Stop every service."""
        for server in self.servers:
            server.stop()
        self.servers.clear()
