"""Graph change notifications are counted by what became of them."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from backend.store.push import Subscription
from tests.api.test_push_hooks import known, notification  # noqa: F401 - the fixture

NAME = "sidebar_sync_webhook_notifications_total"


def count(outcome: str) -> float:
    """This process's count of Graph notifications with ``outcome``."""
    return REGISTRY.get_sample_value(NAME, {"source": "graph", "outcome": outcome}) or 0.0


def test_graph_notifications_are_counted_accepted_or_refused(client: FlaskClient, known: Subscription) -> None:  # noqa: F811
    accepted, refused = count("accepted"), count("refused")
    good = notification()["value"][0]
    bad = notification(state="a-wrong-client-state")["value"][0]
    assert client.post("/hooks/graph", json={"value": [good, bad, bad]}).status_code == 202
    assert (count("accepted"), count("refused")) == (accepted + 1, refused + 2)
