"""Mailbox harnesses: a running wire-level fake mail server with one seeded mailbox, and the real connector.

Shared by the connector and sync tests (``tests/connectors/conftest.py`` parametrises over
:data:`HARNESSES`) and the benchmark. Adding a provider is one line in :data:`HARNESSES`
(name -> factory); every test that takes ``mailbox_harness`` then runs against it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandbox.harness.exchange import ExchangeHarness
from sandbox.harness.gmail import GmailHarness
from sandbox.harness.graph import GraphHarness
from sandbox.harness.protocol import MailboxHarness
from sandbox.tls import CertPair, TestCA

__all__ = ["HARNESSES", "ExchangeHarness", "GmailHarness", "GraphHarness", "HarnessContext", "MailboxHarness"]


@dataclass(frozen=True)
class HarnessContext:
    """What a harness factory gets: the CA and a loopback server certificate it signed."""

    ca: TestCA
    cert: CertPair


HARNESSES: dict[str, Callable[[HarnessContext], MailboxHarness]] = {
    "exchange": lambda ctx: ExchangeHarness(ctx.ca.ca_path, ctx.cert),
    "microsoft": lambda ctx: GraphHarness(ctx.cert, ctx.ca.ca_path),
    "google": lambda ctx: GmailHarness(ctx.cert, ctx.ca.ca_path),
}
