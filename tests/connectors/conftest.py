"""Fixtures for connector tests: one harness per mailbox provider (:data:`sandbox.harness.HARNESSES`), parametrised."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.harness import HARNESSES, HarnessContext, MailboxHarness
from sandbox.tls import CertPair, TestCA


@pytest.fixture(params=list(HARNESSES))
def mailbox_harness(request: pytest.FixtureRequest, ca: TestCA, server_cert: CertPair) -> Iterator[MailboxHarness]:
    """A running fake mail server with one seeded mailbox, for each provider."""
    harness = HARNESSES[request.param](HarnessContext(ca, server_cert))
    try:
        yield harness
    finally:
        harness.close()
