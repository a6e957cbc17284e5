"""The sync benchmark's fakes, built and seeded in processes of their own (``sandbox.serve_process``).

:class:`BenchSalesforce` (the fake Salesforce) and :class:`BenchMailbox` (a mailbox harness: its
fake mail server and identity platform) each live in a child process, with their seeding and what
the benchmark reads back (call counts, the fake Salesforce's answering time). The engine and the
bare download run in the parent and reach them over loopback https, as production reaches the real
services on other machines: the fakes' CPU is not counted against the run, they do not compete
with it for the GIL, nor with each other (a run reading Graph while it writes to Salesforce).
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sandbox import salesforce as fake_sf
from sandbox.harness import HARNESSES, HarnessContext
from sandbox.keepalive import KeepAliveFakeServer
from sandbox.salesforce_rest import data_of
from sandbox.tls import CertPair, TestCA


@dataclass(frozen=True)
class CaPath:
    """The one part of a :class:`TestCA` the harnesses use (a CA's key does not cross processes)."""

    ca_path: str


def process_cpu_seconds(*pids: int | None) -> float | None:
    """CPU seconds (user + system, every thread) of the processes ``pids`` so far; None without /proc."""
    total = 0.0
    for pid in pids:
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                # Fields after the command (which may hold spaces): utime and stime are the 12th and 13th.
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def bench_people(people: int) -> list[str]:
    """The benchmark's Contact and Lead addresses."""
    return [f"person{i:03d}@customer{i % 17}.example" for i in range(people)]


class BenchSalesforce:
    """The fake Salesforce (keep-alive https), in a process of its own."""

    def __init__(self, cert: CertPair) -> None:
        # The fakes' request logs (werkzeug's) would drown the benchmark's figures.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.state = fake_sf.FakeSalesforceState()
        self.state.add_user("alice@acme.example", "alice-pw", email="alice@acme.example", name="Alice Example")
        self.server = KeepAliveFakeServer(fake_sf.create_app(self.state), cert).start()
        self.state.base_url = self.server.url
        self.data = data_of(self.state)

    def info(self) -> dict[str, Any]:
        """What the app's settings need: the host and the connected app's client id and secret."""
        return {"sf_url": self.server.url, "sf_host": self.server.host, "sf_port": self.server.port,
                "sf_client_id": self.state.client_id, "sf_client_secret": self.state.client_secret}

    def seed(self, people: int) -> list[str]:
        """``people`` Contacts (three in five) and Leads; their addresses."""
        addresses = bench_people(people)
        for i, address in enumerate(addresses):
            if i % 5 < 3:
                self.data.add_contact(address, f"Contact {i}")
            else:
                self.data.add_lead(address, f"Lead {i}")
        return addresses

    def reset_calls(self) -> None:
        """Forget the calls recorded so far (the REST calls and the server's requests)."""
        self.data.reset_calls()
        self.server.recorder.reset()

    def summary(self) -> dict[str, Any]:
        """The REST calls since the last reset: writes, look-ups, queries, records, and the fake's answering time."""
        calls = list(self.data.calls)
        return {
            "calls": len(calls),
            "write_calls": sum(1 for c in calls if c.is_write),
            "lookup_calls": sum(1 for c in calls if not c.is_write),
            "queries": sum(sum(1 for _, k in c.subrequests if k == "query") for c in calls),
            "records_written": sum(c.records_written for c in calls),
            "answer_seconds": sum(c.finished - c.started for c in self.server.recorder.calls if c.finished),
        }

    def close(self) -> None:
        """Stop the fake."""
        self.server.stop()


class BenchMailbox:
    """One provider's mailbox harness (its fake mail server and identity platform), in a process of its own."""

    def __init__(self, provider: str, ca_path: str, cert: CertPair) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.harness: Any = HARNESSES[provider](HarnessContext(cast(TestCA, CaPath(ca_path)), cert))

    def info(self) -> dict[str, Any]:
        """What the app's settings and the activation need: the mailbox, its settings and connection."""
        h = self.harness
        return {"provider": h.provider, "address": h.address, "aliases": sorted(h.aliases),
                "settings_overrides": h.settings_overrides(), "connection": h.connection()}

    def secrets(self) -> dict[str, str]:
        """The mailbox's secrets as activation stores them."""
        return dict(self.harness.secrets())

    def seed(self, emails: int, people: int) -> list[str]:
        """``emails`` emails over the last five days to and from the benchmark's people; their Message-IDs."""
        h = self.harness
        rng = random.Random(7)
        addresses = bench_people(people)
        now = datetime.now(tz=UTC)
        message_ids = []
        for i in range(emails):
            when = now - timedelta(minutes=1 + (i * 5 * 24 * 60) // emails)
            person = addresses[i % len(addresses)]
            cc = [addresses[rng.randrange(len(addresses))]] if i % 4 == 0 else None
            message_id = f"<bench-{i}@customer.example>"
            message_ids.append(message_id)
            if i % 3 == 0:
                h.add_email("sent", subject=f"Proposal {i}", sender=h.address, to=[person], cc=cc,
                            body=f"Body {i} " + "x" * 400, message_id=message_id, when=when)
            else:
                h.add_email("inbox", subject=f"Question {i}", sender=person, to=[h.address], cc=cc,
                            body=f"Body {i} " + "y" * 400, message_id=message_id, when=when)
        return message_ids

    def requests(self) -> int:
        """Requests the mail server received so far, as the provider counts them."""
        return int(self.harness.request_count())

    def quota_units(self) -> int | None:
        """Gmail's quota units counted so far (None for other providers)."""
        units = getattr(self.harness, "quota_units", None)
        return int(units()) if callable(units) else None

    def bare_target(self) -> dict[str, Any]:
        """What the bare download needs to read the same mailbox with the client library alone."""
        h = self.harness
        if h.provider == "microsoft":
            token = h.ms.user_tokens(h.user, h.ms.client_id, ["Mail.Read", "Calendars.Read", "User.Read"],
                                     refresh=False)["access_token"]
            return {"provider": h.provider, "token": token, "graph_url": h.graph_server.url,
                    "page_size": h.page_size, "ca_path": h.ca_path}
        if h.provider == "exchange":
            return {"provider": h.provider, "settings_overrides": h.settings_overrides(),
                    "connection": h.connection(), "ews_url": h.ews_url, "password": h.password,
                    "address": h.address}
        return {"provider": h.provider}

    def close(self) -> None:
        """Stop the fakes."""
        self.harness.close()
