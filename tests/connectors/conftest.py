"""Fixtures for connector tests: one harness per mailbox provider, parametrised.

Adding a provider is one line in :data:`HARNESSES` (name -> factory); every test that takes
``mailbox_harness`` then runs against it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from sandbox.tls import CertPair, TestCA
from tests.connectors.harness import MailboxHarness
from tests.connectors.harness_exchange import ExchangeHarness
from tests.connectors.harness_gmail import GmailHarness
from tests.connectors.harness_graph import GraphHarness


@dataclass(frozen=True)
class HarnessContext:
    """What a harness factory gets: the session CA and a loopback server certificate."""

    ca: TestCA
    cert: CertPair


HARNESSES: dict[str, Callable[[HarnessContext], MailboxHarness]] = {
    "exchange": lambda ctx: ExchangeHarness(ctx.ca.ca_path, ctx.cert),
    "microsoft": lambda ctx: GraphHarness(ctx.cert, ctx.ca.ca_path),
    "google": lambda ctx: GmailHarness(ctx.cert, ctx.ca.ca_path),
}


@pytest.fixture(params=list(HARNESSES))
def mailbox_harness(request: pytest.FixtureRequest, ca: TestCA, server_cert: CertPair) -> Iterator[MailboxHarness]:
    """A running fake mail server with one seeded mailbox, for each provider."""
    harness = HARNESSES[request.param](HarnessContext(ca, server_cert))
    try:
        yield harness
    finally:
        harness.close()
