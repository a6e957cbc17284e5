"""Disconnecting an org's mailbox access: everyone read with it stops, its facts and secrets go, the tenant is free."""

from __future__ import annotations

import pytest

from backend.extensions import services
from backend.store.mailboxes import SyncState
from tests.mass_env import ORG, MassEnv

OTHER_ORG = "00DOTHER00000000AAA"


def delete(mass: MassEnv, provider: str, csrf: bool = True) -> object:
    """DELETE /api/admin/connections/<provider> from the console."""
    return mass.client.delete(f"/api/admin/connections/{provider}",
                              headers={"X-CSRF-Token": mass.csrf} if csrf else {})


def test_disconnecting_microsoft_turns_off_everyone_read_with_it_and_frees_the_tenant(mass: MassEnv) -> None:
    mass.activate(["bob", "jill"])
    store = services().store
    answer = delete(mass, "microsoft")
    assert answer.status_code == 200, answer.get_data(as_text=True)  # type: ignore[attr-defined]
    assert answer.json == {"provider": "microsoft", "connected": False, "was_connected": True,  # type: ignore[attr-defined]
                           "deactivated": 2}
    for name in ("bob", "jill"):
        mailbox = store.mailboxes.get(mass.uid(name))
        assert mailbox is not None and mailbox.state is SyncState.DEACTIVATED and mailbox.connection == {}
        assert store.redis.zscore(store.keys("schedule"), mass.uid(name)) is None
    ivan = store.mailboxes.get(mass.uid("ivan"))  # his own connection, not the org's
    assert ivan is not None and ivan.state is SyncState.RUNNING
    assert store.org_access.get(ORG).microsoft_tenant == "" and store.org_access.tenant_owner(mass.tenant) == ""
    entry = store.audit.recent(ORG)[0]
    assert entry["action"] == "disconnect_microsoft" and sorted(entry["targets"]) == sorted(
        [mass.uid("bob"), mass.uid("jill")]) and entry["detail"] == {"done": 2}
    picker = {p["provider"]: p for p in mass.client.get("/api/admin/connections").json["providers"]}
    assert picker["microsoft"]["state"] == "not_connected" and not picker["microsoft"]["ready"]
    # The tenant may now be connected to another org, and activating again needs consent first.
    store.org_access.connect_microsoft(OTHER_ORG, mass.tenant, "someone")
    again = mass.post("/api/admin/activate", json={"provider": "microsoft", "users": ["bob@acme.example"]})
    assert (again.status_code, again.json["error"]["code"]) == (409, "org_access_missing")


def test_disconnecting_twice_answers_the_same_and_audits_once(mass: MassEnv) -> None:
    assert delete(mass, "microsoft").status_code == 200  # type: ignore[attr-defined]
    second = delete(mass, "microsoft")
    assert second.json == {"provider": "microsoft", "connected": False, "was_connected": False,  # type: ignore[attr-defined]
                           "deactivated": 0}
    assert [e["action"] for e in services().store.audit.recent(ORG)].count("disconnect_microsoft") == 1


def test_a_tenant_another_org_holds_is_left_to_it(mass: MassEnv) -> None:
    store = services().store
    # As after a tenant switch raced with the other org's connect: the owner key is not ours.
    store.redis.set(store.keys("mstenant-org", mass.tenant), OTHER_ORG)
    delete(mass, "microsoft")
    assert store.org_access.tenant_owner(mass.tenant) == OTHER_ORG


@pytest.mark.parametrize(("provider", "csrf", "status", "code"), [
    ("fax", True, 405, "method_not_allowed"),  # no such connection: no DELETE there
    ("microsoft", False, 403, None),
])
def test_bad_disconnects_change_nothing(mass: MassEnv, provider: str, csrf: bool, status: int,
                                        code: str | None) -> None:
    mass.activate(["bob"])
    answer = delete(mass, provider, csrf=csrf)
    assert answer.status_code == status, answer.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "error" in answer.json and (code is None or answer.json["error"]["code"] == code)  # type: ignore[attr-defined]
    store = services().store
    assert store.org_access.get(ORG).microsoft_tenant == mass.tenant
    assert store.mailboxes.get(mass.uid("bob")).state is SyncState.RUNNING  # type: ignore[union-attr]


@pytest.mark.parametrize("when", ["between_slices", "inside_a_slice"])
def test_a_disconnect_while_an_activation_runs_leaves_nobody_on_the_forgotten_access(
        mass: MassEnv, monkeypatch: pytest.MonkeyPatch, when: str) -> None:
    from backend.jobs import activation as job

    monkeypatch.setattr(job, "SLICE", 1)
    real = job.activate_slice
    slices: list[int] = []

    def slice_and_disconnect(*args: object, **kwargs: object) -> object:
        if when == "inside_a_slice" and not slices:
            out = real(*args, **kwargs)  # type: ignore[arg-type]
            delete(mass, "microsoft")  # after this slice activated bob, before the job looks again
        else:
            out = real(*args, **kwargs)  # type: ignore[arg-type]
            if not slices:
                delete(mass, "microsoft")
        slices.append(1)
        return out

    monkeypatch.setattr(job, "activate_slice", slice_and_disconnect)
    started = mass.post("/api/admin/activate", json={"provider": "microsoft",
                                                     "users": ["bob@acme.example", "jill@acme.example"]})
    job.run_activation(started.json["job_id"])
    store = services().store
    for name in ("bob", "jill"):
        mailbox = store.mailboxes.get(mass.uid(name))
        assert mailbox is None or mailbox.state is not SyncState.RUNNING, (name, mailbox)
    answer = mass.client.get(f"/api/admin/activations/{started.json['job_id']}").json
    assert answer["state"] == "failed" and len(slices) == 1
    assert {r["address"]: r["result"] for r in answer["results"]} == {
        "bob@acme.example": "access_disconnected", "jill@acme.example": "access_disconnected"}
