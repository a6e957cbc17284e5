"""The org policy decides whether a person may pause or deactivate a mailbox their administrator mass-activated.

Only mass-activated mailbox (``connection["via"] == mass.VIA``) are concerned; a personal connection
is always the person's to pause and deactivate. Defaults: pause allowed, deactivate not.
"""

from __future__ import annotations

from typing import Any

import pytest

from backend.extensions import services
from backend.store.mailboxes import SyncState
from backend.sync.mass_controls import CONTROL_POLICY, MESSAGES
from tests.mass_env import MassEnv, pane_login

DONE = {"pause": SyncState.PAUSED, "deactivate": SyncState.DEACTIVATED}


def set_policy(mass: MassEnv, body: dict[str, Any]) -> Any:
    """PUT /api/admin/settings from the admin's console."""
    return mass.client.put("/api/admin/settings", headers={"X-CSRF-Token": mass.csrf}, json=body)


def test_the_defaults_let_people_pause_but_not_deactivate(mass: MassEnv, ca: Any) -> None:
    policy = mass.client.get("/api/admin/settings").json
    assert policy["mass_activated_may_pause"] == {"value": True, "locked": False}
    assert policy["mass_activated_may_deactivate"] == {"value": False, "locked": False}
    mass.activate(["bob"])
    bob = pane_login(mass, ca, "bob")
    view = mass.app.test_client().get("/api/sync", headers=bob.headers).json
    assert view["locked_controls"] == {"deactivate": MESSAGES["deactivate"]}
    ivan = pane_login(mass, ca, "ivan")  # his own connection: nothing is locked
    assert mass.app.test_client().get("/api/sync", headers=ivan.headers).json["locked_controls"] == {}


@pytest.mark.parametrize("origin", ["mass", "personal"])
@pytest.mark.parametrize("action", ["pause", "deactivate"])
@pytest.mark.parametrize("allowed", [True, False])
def test_the_policy_decides_pause_and_deactivate_of_mass_activated_mailboxes(
        mass: MassEnv, ca: Any, origin: str, action: str, allowed: bool) -> None:
    name = "bob" if origin == "mass" else "ivan"  # ivan connected his own mailbox (tests/mass_env.py)
    if origin == "mass":
        assert mass.activate(["bob"])["results"][0]["result"] == "activated"
    policy = CONTROL_POLICY[action]
    saved = set_policy(mass, {policy: {"value": allowed}})
    assert saved.status_code == 200 and saved.json[policy]["value"] is allowed, saved.get_data(as_text=True)
    person = pane_login(mass, ca, name)
    pane = mass.app.test_client()
    before = pane.get("/api/sync", headers=person.headers).json
    assert before["state"] == "running"
    answer = pane.post(f"/api/sync/{action}", headers=person.headers)
    mailbox = services().store.mailboxes.get(mass.uid(name))
    assert mailbox is not None
    if allowed or origin == "personal":
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.json["state"] == DONE[action].value and mailbox.state is DONE[action]
        assert action not in before["locked_controls"]
    else:
        assert answer.status_code == 403, answer.get_data(as_text=True)
        assert answer.json == {"error": {"code": "locked_by_policy", "message": MESSAGES[action]}}
        assert mailbox.state is SyncState.RUNNING and mailbox.activated  # nothing changed
        assert before["locked_controls"][action] == MESSAGES[action]


def test_resume_of_a_paused_mass_activated_mailbox_is_never_refused(mass: MassEnv, ca: Any) -> None:
    mass.activate(["bob"])
    bob = pane_login(mass, ca, "bob")
    pane = mass.app.test_client()
    assert pane.post("/api/sync/pause", headers=bob.headers).status_code == 200
    assert set_policy(mass, {"mass_activated_may_pause": False}).status_code == 200
    resumed = pane.post("/api/sync/resume", headers=bob.headers)
    assert resumed.status_code == 200 and resumed.json["state"] == "running", resumed.get_data(as_text=True)
    assert pane.post("/api/sync/pause", headers=bob.headers).json["error"]["code"] == "locked_by_policy"


@pytest.mark.parametrize("body", [
    {"mass_activated_may_pause": "yes"}, {"mass_activated_may_pause": 1}, {"mass_activated_may_pause": None},
    {"mass_activated_may_deactivate": "false"}, {"mass_activated_may_deactivate": {"value": 0}},
    {"mass_activated_may_deactivate": {"value": True, "locked": True}},
    {"mass_activated_may_pause": {"locked": True}}, {"mass_activated_may_pause": {"value": True, "lock": False}},
])
def test_the_policy_refuses_bad_values(mass: MassEnv, body: dict[str, Any]) -> None:
    answer = set_policy(mass, body)
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_input", answer.get_data(as_text=True)
    assert answer.json["error"]["field"] == next(iter(body))
    policy = mass.client.get("/api/admin/settings").json
    assert policy["mass_activated_may_pause"]["value"] is True
    assert policy["mass_activated_may_deactivate"]["value"] is False


def test_openapi_describes_the_code_and_the_fields(mass: MassEnv) -> None:
    spec = mass.client.get("/api/openapi.json").json
    for action in ("pause", "deactivate"):
        operation = spec["paths"][f"/api/sync/{action}"]["post"]
        assert "locked_by_policy" in operation["description"] and "403" in operation["responses"]
    assert "locked_controls" in spec["components"]["schemas"]["Sync"]["properties"]
    policy = spec["components"]["schemas"]["OrgPolicy"]["properties"]
    assert {"mass_activated_may_pause", "mass_activated_may_deactivate"} <= set(policy)
