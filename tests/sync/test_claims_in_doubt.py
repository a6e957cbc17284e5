"""A write whose answer never came keeps its emails claimed by no run until Salesforce must have finished it.

Our client gives up on a write after SALESFORCE_WRITE_TIMEOUT_SECONDS while Salesforce may still be
committing it. Had its claims been released, a colleague's waiting run (or this mailbox's own retry)
would look the email up before that commit, find nothing and write it a second time.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from backend.extensions import services
from backend.store.claims import DOUBT_PREFIX
from backend.sync import claims
from tests.runs import run_mailbox
from tests.sync.test_colleagues import CONTACT, Colleagues, shared, team  # noqa: F401 - the fixture


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Writes time out after one second (the fake Salesforce is made slower than that)."""
    return {**app_config, "SALESFORCE_WRITE_TIMEOUT_SECONDS": "1"}


def test_a_timed_out_write_is_not_written_again_by_a_colleague_or_a_retry(team: Colleagues,  # noqa: F811
                                                                          monkeypatch: Any) -> None:
    monkeypatch.setattr(claims, "CLAIM_WAIT_SECONDS", 3.0)
    monkeypatch.setattr(claims, "IN_DOUBT_SECONDS", 6)
    team.data.add_contact(CONTACT)
    for uid in (team.alice.uid, team.bob_uid):
        team.box(uid).add("inbox", shared(0))
    team.data.write_delay = 2.0  # Salesforce commits after our client stopped waiting
    outcome = team.run_both()
    team.data.write_delay = 0.0
    # One run timed out on its write; the other waited for the email and gave up for now.
    assert sorted(type(o).__name__ for o in outcome.values()) == ["AnswerLate", "ClaimWaitTimeout"], outcome
    store = services().store
    held = [store.redis.get(k) for k in store.redis.keys(store.keys("claim", "*"))]
    assert held and all(str(v).startswith(DOUBT_PREFIX) for v in held), held
    time.sleep(1.5)  # the slow write commits
    keys = [m["MessageIdentifier"] for m in team.data.all("EmailMessage")]
    assert keys == ["<shared-0@customer>"]
    # While in doubt, nobody writes it (the retries wait); afterwards the look-up finds it written.
    time.sleep(max(0.0, 6 - 3.5))
    again = team.run_both()
    assert all(isinstance(r, dict) and r["status"] == "ok" for r in again.values()), again
    assert [m["MessageIdentifier"] for m in team.data.all("EmailMessage")] == ["<shared-0@customer>"]


def test_a_timed_out_look_up_holds_nothing_in_doubt(team: Colleagues, monkeypatch: Any) -> None:  # noqa: F811
    import json

    import requests
    from simple_salesforce import Salesforce

    from backend.errors import AnswerLate, Unavailable

    team.data.add_contact(CONTACT)
    team.box(team.alice.uid).add("inbox", shared(0))
    real = Salesforce.restful

    def late_queries(self: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        subrequests = json.loads(kwargs.get("data") or b"{}").get("compositeRequest") or []
        if subrequests and all(s["method"] == "GET" for s in subrequests):
            raise requests.ReadTimeout("the look-up's answer came too late")  # as on the wire
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(Salesforce, "restful", late_queries)
    with pytest.raises(Unavailable) as caught:
        run_mailbox(team.alice.uid)
    assert not isinstance(caught.value, AnswerLate)  # queries commit nothing: nothing is in doubt
    store = services().store
    assert not store.redis.keys(store.keys("claim", "*"))
