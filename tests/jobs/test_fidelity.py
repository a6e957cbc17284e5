"""Meetings and mail as they are (issue 15), at the wire level: the real mailbox connector against its
fake (EWS or Graph), the real Salesforce connector against its fake, runs driven in this process.

Each case changes the mailbox on the server side between runs and checks what the Salesforce fake
holds afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from backend.connectors.mailbox import MAX_RECIPIENTS
from backend.jobs.context import use_app
from tests.e2e import SyncEnv
from tests.runs import run_mailbox

CONTACT = "carol@customer.example"
OTHER = "dave@customer.example"


@pytest.fixture
def env(env_factory: Callable[..., SyncEnv]) -> Iterator[SyncEnv]:
    """Alice logged in, two contacts in Salesforce, sync activated for the harness's mailbox."""
    environment = env_factory()
    environment.sf.add_contact(CONTACT, "Carol")
    environment.sf.add_contact(OTHER, "Dave")
    environment.log_in()
    environment.activate()
    use_app(environment.app)
    try:
        yield environment
    finally:
        use_app(None)


def test_a_message_with_more_than_2000_recipients_is_cut_with_a_trace_in_the_run_record(env: SyncEnv) -> None:
    crowd = [f"person{i}@crowd.example" for i in range(MAX_RECIPIENTS + 150)]
    env.harness.add_email("inbox", subject="Newsletter", sender=CONTACT, to=[env.harness.address, *crowd],
                          message_id="<crowd@customer.example>")
    env.harness.add_email("inbox", subject="Small", sender=CONTACT, to=[env.harness.address],
                          message_id="<small@customer.example>")
    with env.app.app_context():
        record = run_mailbox(env.uid, interactive=True)
        shown = env.mailbox().last_run
    counts = record["counts"]
    assert record["status"] == "ok", record
    assert counts["emails_written"] == 2
    assert counts["recipients_cut"] == 1
    assert counts["recipients_cut_by"] == {"inbox": 1}
    assert counts["recipients_dropped"] == 151  # the mailbox itself is among the To
    # The pane reads the last run from the sync JSON.
    assert shown is not None and shown["counts"]["recipients_cut_by"] == {"inbox": 1}

