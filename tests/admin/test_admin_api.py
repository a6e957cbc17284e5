"""``/api/admin`` over HTTP: who is an admin, one org only, the console's session and CSRF, the policy."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import services
from sandbox.login import LoggedIn, login
from sandbox.salesforce_rest import data_of
from tests.admin.helpers import COOKIE, ORG, OTHER_ORG, console_login, run_record, seed_user

ROUTES_GET = ("/api/admin/summary", "/api/admin/users", "/api/admin/settings", "/api/admin/audit")


@pytest.fixture
def people(fake_salesforce: Any) -> Any:
    """Alice (not an admin), Ada (Modify All Data), Sam (the Sidebar_Sync_Admin permission set), Olga (another org)."""
    state = fake_salesforce.state
    state.add_user("ada@acme.example", "ada-pw", name="Ada Admin", is_admin=True)
    state.add_user("sam@acme.example", "sam-pw", name="Sam Setter")
    state.permission_sets["sam@acme.example"] = ["Sidebar_Sync_Admin"]
    state.add_user("olga@other.example", "olga-pw", name="Olga Other", org_id=OTHER_ORG, is_admin=True)
    return state


def sign_in(client: FlaskClient, ca: Any, who: str) -> LoggedIn:
    """A pane session of ``who`` (alice, ada, sam, olga)."""
    address = {"alice": "alice@acme.example", "ada": "ada@acme.example", "sam": "sam@acme.example",
               "olga": "olga@other.example"}[who]
    return login(client, ca.ca_path, mailbox=address, username=address, password=f"{who}-pw")


def test_a_non_admin_is_refused_everywhere(client: FlaskClient, ca: Any, people: Any) -> None:
    alice = sign_in(client, ca, "alice")
    for path in ROUTES_GET:
        resp = client.get(path, headers=alice.headers)
        assert resp.status_code == 403 and resp.json["error"]["code"] == "not_admin", path
    resp = client.post(f"/api/admin/users/{alice.uid}/pause", headers=alice.headers)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "not_admin"
    assert client.get("/api/me", headers=alice.headers).json["is_admin"] is False


def test_without_a_session_is_401(client: FlaskClient) -> None:
    for path in ROUTES_GET:
        resp = client.get(path)
        assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("who", ["ada", "sam"])
def test_modify_all_data_or_the_permission_set_makes_an_admin(client: FlaskClient, ca: Any, people: Any,
                                                              who: str) -> None:
    admin = sign_in(client, ca, who)
    assert client.get("/api/me", headers=admin.headers).json["is_admin"] is True
    body = client.get("/api/admin/summary", headers=admin.headers).json
    assert body["org_id"] == ORG and body["users"] == 1


def test_the_admin_check_is_cached_five_minutes(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    ada = sign_in(client, ca, "ada")
    rest = data_of(people)
    asked = lambda: sum(1 for c in rest.calls if "PermissionSetAssignment" in str(c))  # noqa: E731
    client.get("/api/admin/summary", headers=ada.headers)
    before = asked()
    assert before >= 1
    for _ in range(3):
        assert client.get("/api/admin/users", headers=ada.headers).status_code == 200
    assert asked() == before
    people.users["ada@acme.example"].is_admin = False
    with app.app_context():
        services().store.users.update(ada.uid, admin_checked_at=1.0)  # five minutes have passed
    resp = client.get("/api/admin/users", headers=ada.headers)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "not_admin"


def test_another_orgs_user_is_404(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    ada = sign_in(client, ca, "ada")
    olga = sign_in(client, ca, "olga")
    paths = [("get", f"/api/admin/users/{olga.uid}"), ("post", f"/api/admin/users/{olga.uid}/pause"),
             ("get", "/api/admin/users/u-no-such-user")]
    for method, path in paths:
        resp = getattr(client, method)(path, headers=ada.headers)
        assert resp.status_code == 404 and resp.json["error"]["code"] == "not_found", path
        assert "Olga" not in resp.get_data(as_text=True)
    resp = client.post("/api/admin/users/bulk", headers=ada.headers, json={"action": "pause", "ids": [olga.uid]})
    assert resp.status_code == 404
    listed = client.get("/api/admin/users", headers=ada.headers).json
    assert olga.uid not in {u["id"] for u in listed["users"]}
    # Olga administers her own org and sees only herself.
    assert [u["id"] for u in client.get("/api/admin/users", headers=olga.headers).json["users"]] == [olga.uid]


def test_console_session_and_csrf(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    csrf = console_login(client, ca.ca_path, "ada@acme.example", "ada-pw")
    with app.app_context():
        uid = seed_user(ORG, 1)
    assert client.get("/api/admin/summary").status_code == 200
    refused = client.post(f"/api/admin/users/{uid}/pause")
    assert refused.status_code == 403 and refused.json["error"]["code"] == "csrf_failed"
    wrong = client.post(f"/api/admin/users/{uid}/pause", headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403 and wrong.json["error"]["code"] == "csrf_failed"
    elsewhere = client.post(f"/api/admin/users/{uid}/pause",
                            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    put = client.put("/api/admin/settings", json={"sync_events": False})
    assert put.status_code == 403 and put.json["error"]["code"] == "csrf_failed"
    ok = client.post(f"/api/admin/users/{uid}/pause", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json["state"] == "paused"
    # Logout needs the token too, then the cookie is worth nothing.
    assert client.post("/admin/logout").status_code == 403
    assert client.post("/admin/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/admin/summary").status_code == 401


def test_console_session_ends_when_salesforce_login_is_revoked(app: Flask, client: FlaskClient, ca: Any,
                                                               people: Any) -> None:
    console_login(client, ca.ca_path, "ada@acme.example", "ada-pw")
    assert client.get("/api/admin/summary").status_code == 200
    people.revoke_refresh_tokens("ada@acme.example")
    with app.app_context():
        user = services().store.users.find_by_salesforce(ORG, people.users["ada@acme.example"].user_id)
        assert user is not None
        services().store.users.update(user.id, admin_checked_at=1.0)
        services().store.secrets.delete("user", user.id, "sf_access")
    resp = client.get("/api/admin/summary")
    assert resp.status_code == 401 and resp.json["error"]["code"] == "salesforce_revoked"
    assert client.get("/api/admin/summary").json["error"]["code"] == "unauthorized"


def test_console_page_headers(client: FlaskClient) -> None:
    resp = client.get("/admin")
    assert resp.status_code == 200 and b"Sidebar Sync administration" in resp.data
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert COOKIE not in resp.headers.get("Set-Cookie", "")


def test_list_filters_search_sort_and_pages(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    ada = sign_in(client, ca, "ada")
    with app.app_context():
        for n in range(30):
            state = ("running", "paused", "disabled_error", "not_activated", "deactivated")[n % 5]
            seed_user(ORG, n, state=state, provider="microsoft" if n % 2 else "exchange")
        seed_user(OTHER_ORG, 99)
    body = client.get("/api/admin/users?per_page=10", headers=ada.headers).json
    assert body["total"] == 31 and body["pages"] == 4 and len(body["users"]) == 10
    paused = client.get("/api/admin/users?state=paused", headers=ada.headers).json
    assert paused["total"] == 6 and {u["state"] for u in paused["users"]} == {"paused"}
    both = client.get("/api/admin/users?state=running&provider=microsoft", headers=ada.headers).json
    assert {(u["state"], u["provider"]) for u in both["users"]} == {("running", "microsoft")}
    found = client.get("/api/admin/users?q=USER7%40acme", headers=ada.headers).json
    assert [u["username"] for u in found["users"]] == ["user7@acme.example"]
    named = client.get("/api/admin/users?q=user%2000012", headers=ada.headers).json
    assert [u["name"] for u in named["users"]] == ["User 00012"]
    desc = client.get("/api/admin/users?sort=name&order=desc&per_page=2", headers=ada.headers).json
    assert [u["name"] for u in desc["users"]] == ["User 00029", "User 00028"]
    last = client.get("/api/admin/users?per_page=10&page=4", headers=ada.headers).json
    assert len(last["users"]) == 1


@pytest.mark.parametrize("query", ["state=sleeping", "provider=aol", "sort=password", "order=up", "page=0",
                                   "page=x", "per_page=201", "per_page=-1", "q=" + "x" * 201])
def test_list_refuses_bad_queries(client: FlaskClient, ca: Any, people: Any, query: str) -> None:
    ada = sign_in(client, ca, "ada")
    resp = client.get(f"/api/admin/users?{query}", headers=ada.headers)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_input"


def test_actions_on_one_user_and_the_audit(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    ada = sign_in(client, ca, "ada")
    with app.app_context():
        uid = seed_user(ORG, 1)
        store = services().store
        store.mailboxes.save_cursors_if_connected(uid, {"inbox": "c1"})
        store.runs.record(uid, run_record())
    h = ada.headers
    assert client.post(f"/api/admin/users/{uid}/pause", headers=h).json["state"] == "paused"
    assert client.post(f"/api/admin/users/{uid}/pause", headers=h).status_code == 409
    assert client.post(f"/api/admin/users/{uid}/resume", headers=h).status_code == 202
    assert client.post(f"/api/admin/users/{uid}/disable", headers=h).json["error"]["code"] == "disabled_by_admin"
    enabled = client.post(f"/api/admin/users/{uid}/enable", headers=h)
    assert enabled.status_code == 202 and enabled.json["state"] == "running" and enabled.json["error"] is None
    assert client.post(f"/api/admin/users/{uid}/reset", headers=h).status_code == 202
    with app.app_context():
        assert services().store.mailboxes.cursors(uid) == {}
    assert client.post(f"/api/admin/users/{uid}/sync", headers=h).status_code == 202
    again = client.post(f"/api/admin/users/{uid}/sync", headers=h)
    assert again.status_code == 429 and again.json["error"]["code"] == "rate_limited"
    assert client.post(f"/api/admin/users/{uid}/explode", headers=h).status_code == 404
    detail = client.get(f"/api/admin/users/{uid}", headers=h).json
    assert detail["runs"][0]["counts"]["written"] == 2 and detail["quarantine"]["count"] == 0
    audit = client.get("/api/admin/audit", headers=h).json["entries"]
    assert [e["action"] for e in audit] == ["sync", "sync", "reset", "enable", "disable", "resume", "pause",
                                            "pause"]
    assert audit[0]["actor_name"] == "Ada Admin" and audit[0]["targets"] == [uid]
    assert audit[0]["detail"]["refused"] == {uid: "rate_limited"}


def test_reset_is_refused_while_a_run_is_in_progress(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    """The run in flight would save its cursors after the Reset cleared them: the Reset silently undone."""
    from rq.job import Job, JobStatus

    from backend.jobs.sync import job_id_for

    ada = sign_in(client, ca, "ada")
    with app.app_context():
        uid = seed_user(ORG, 1)
        store = services().store
        store.mailboxes.save_cursors_if_connected(uid, {"inbox": "c1"})
        job = Job.create("backend.jobs.sync.sync_mailbox", args=(uid,), id=job_id_for(uid),
                         connection=services().redis_raw)
        job.set_status(JobStatus.STARTED)
        job.save()
    refused = client.post(f"/api/admin/users/{uid}/reset", headers=ada.headers)
    assert refused.status_code == 409 and refused.json["error"]["code"] == "invalid_state"
    assert refused.json["error"]["message"] == "A run is in progress for this user. Reset once it has finished."
    bulk = client.post("/api/admin/users/bulk", json={"action": "reset", "ids": [uid]}, headers=ada.headers)
    assert bulk.json["results"][0]["status"] == "invalid_state", bulk.json
    with app.app_context():
        assert services().store.mailboxes.cursors(uid) == {"inbox": "c1"}
        job.set_status(JobStatus.FINISHED)
    assert client.post(f"/api/admin/users/{uid}/reset", headers=ada.headers).status_code == 202
    with app.app_context():
        assert services().store.mailboxes.cursors(uid) == {}


def test_bulk_action_on_a_selection(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    ada = sign_in(client, ca, "ada")
    with app.app_context():
        running = [seed_user(ORG, n) for n in range(3)]
        paused = seed_user(ORG, 9, state="paused")
    resp = client.post("/api/admin/users/bulk", headers=ada.headers,
                       json={"action": "pause", "ids": [*running, paused]})
    assert resp.status_code == 200 and resp.json["done"] == 3
    assert {r["id"]: r["status"] for r in resp.json["results"]}[paused] == "invalid_state"
    summary = client.get("/api/admin/summary", headers=ada.headers).json
    assert summary["mailboxes"]["paused"] == 4


@pytest.mark.parametrize("body", [
    {"action": "explode", "ids": ["u1"]}, {"action": "pause"}, {"action": "pause", "ids": []},
    {"action": "pause", "ids": "u1"}, {"action": "pause", "ids": [1]}, {"action": "pause", "ids": ["x" * 65]},
    {"action": "pause", "ids": ["u1"], "extra": 1}, {"action": "pause", "ids": ["u"] * 501},
])
def test_bulk_refuses_bad_bodies(client: FlaskClient, ca: Any, people: Any, body: dict[str, Any]) -> None:
    ada = sign_in(client, ca, "ada")
    resp = client.post("/api/admin/users/bulk", headers=ada.headers, json=body)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_input"


def test_a_locked_value_wins_and_is_refused(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    ada = sign_in(client, ca, "ada")
    alice = sign_in(client, ca, "alice")
    # A default: applies to whoever did not choose; a person's choice stays theirs.
    default = client.put("/api/admin/settings", headers=ada.headers, json={"cancelled_events": "delete"})
    assert default.status_code == 200
    assert client.get("/api/sync", headers=alice.headers).json["settings"]["cancelled_events"] == "delete"
    assert client.put("/api/sync/settings", headers=alice.headers,
                      json={"cancelled_events": "mark"}).json["settings"]["cancelled_events"] == "mark"
    locked = client.put("/api/admin/settings", headers=ada.headers,
                        json={"sync_events": {"value": False, "locked": True}, "backfill_days": 3})
    assert locked.json["sync_events"] == {"value": False, "locked": True}
    view = client.get("/api/sync", headers=alice.headers).json
    assert view["settings"]["sync_events"] is False and view["policy"]["locked"] == ["sync_events"]
    refused = client.put("/api/sync/settings", headers=alice.headers, json={"sync_events": True})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "locked_by_admin"
    assert refused.json["error"]["field"] == "sync_events"
    # Other values stay hers to change.
    assert client.put("/api/sync/settings", headers=alice.headers, json={"sync_emails": False}).status_code == 200
    with app.app_context():
        from backend.sync.policy import effective_settings

        store = services().store
        applied = effective_settings(store.orgs.get(ORG), store.mailboxes.get(alice.uid).settings)  # type: ignore[union-attr]
        assert applied["sync_events"] is False and applied["sync_emails"] is False and applied["backfill_days"] == 3
    audit = client.get("/api/admin/audit", headers=ada.headers).json["entries"]
    changed = audit[0]["detail"]["changed"]
    assert audit[0]["action"] == "settings" and changed == ["backfill_days", "locked", "sync_events"]


@pytest.mark.parametrize("body", [
    {"blocklist": "not an address!"}, {"internal_domains": ["bob@acme.example"]}, {"sync_emails": "yes"},
    {"cancelled_events": "burn"}, {"backfill_days": 366}, {"backfill_days": True}, {"admin_email": "nobody"},
    {"sync_events": {"locked": "yes"}}, {"sync_events": {"value": True, "colour": "red"}}, {"sync_events": {}},
    {"api_max": 5}, {"locked": ["sync_events"]},
])
def test_policy_refuses_bad_values(client: FlaskClient, ca: Any, people: Any, body: dict[str, Any]) -> None:
    ada = sign_in(client, ca, "ada")
    resp = client.put("/api/admin/settings", headers=ada.headers, json=body)
    assert resp.status_code == 400 and resp.json["error"]["code"] == "invalid_input", body


def test_the_run_applies_the_orgs_locked_values(app: Flask) -> None:
    from backend.store.orgs import OrgSettings
    from backend.sync.policy import effective_settings

    org = OrgSettings(org_id=ORG, blocklist=["rival.example"], sync_emails=False, locked=["sync_emails", "blocklist"])
    personal = {"sync_emails": True, "sync_events": True, "blocklist": ["me.example"], "cancelled_events": "mark",
                "chosen": ["sync_emails", "blocklist"]}
    applied = effective_settings(org, personal)
    assert applied["sync_emails"] is False and applied["blocklist"] == [] and "backfill_days" not in applied
    unlocked = effective_settings(OrgSettings(org_id=ORG, sync_emails=False), personal)
    assert unlocked["sync_emails"] is True and unlocked["blocklist"] == ["me.example"]


def test_openapi_describes_the_admin_routes(client: FlaskClient) -> None:
    paths = client.get("/api/openapi.json").json["paths"]
    for path in ("/api/admin/summary", "/api/admin/users", "/api/admin/users/{uid}", "/api/admin/users/{uid}/{action}",
                 "/api/admin/users/bulk", "/api/admin/settings", "/api/admin/audit", "/api/admin/session"):
        assert path in paths, path
    assert set(paths["/api/admin/settings"]) == {"get", "put"}


def test_a_refused_permission_query_means_not_an_admin(app: Flask, client: FlaskClient, ca: Any, people: Any) -> None:
    from sandbox.salesforce_rest import ApiFailure

    alice = sign_in(client, ca, "alice")

    def refused() -> list[dict[str, Any]]:
        raise ApiFailure(403, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object")

    people.permission_assignments = refused
    with app.app_context():
        services().store.users.update(alice.uid, admin_checked_at=1.0)
    me = client.get("/api/me", headers=alice.headers)
    assert me.status_code == 200 and me.json["is_admin"] is False
    with app.app_context():
        # The refusal is an answer (kept five minutes), not an outage (which keeps the last answer).
        assert services().store.users.get(alice.uid).admin_checked_at > 1.0  # type: ignore[union-attr]
    resp = client.get("/api/admin/summary", headers=alice.headers)
    assert resp.status_code == 403 and resp.json["error"]["code"] == "not_admin"
