"""Mass activation through on-premises Exchange impersonation: results, idempotence, runs, the broken org."""

from __future__ import annotations

import pytest

from backend.errors import AuthRevoked
from backend.extensions import QUEUE_NOTIFY, services
from backend.jobs.org_notify import send_org_notice
from backend.jobs.sync import sync_mailbox
from backend.store.mailboxes import SyncState
from backend.sync.org_providers import EXCHANGE, ORG_PROVIDERS
from sandbox.harness.exchange import ExchangeHarness
from tests.exchange_mass_env import (
    SERVICE,
    SERVICE_PASSWORD,
    activate_exchange,
    mass_config,  # noqa: F401 - the fixture, with the fake Exchange server
    seed_exchange,
    set_up_service_account,
)
from tests.mass_env import ADMIN_ADDRESS, EXPECTED, ORG, MassEnv, address

CUSTOMER = "customer@client.example"


def test_the_console_saves_the_service_account_but_never_shows_the_password(exch: MassEnv,
                                                                            ews: ExchangeHarness) -> None:
    view = exch.client.get("/api/admin/connections/exchange").json
    assert view["login"] == SERVICE and view["ews_url"] == ews.ews_url and view["password_saved"]
    assert view["state"] == "ok" and SERVICE_PASSWORD not in str(view)
    raw = services().store.redis.hgetall(services().store.keys("orgaccess", ORG))
    assert SERVICE_PASSWORD not in str(raw)


@pytest.mark.parametrize(("login", "password", "code"), [
    (SERVICE, "wrong", "auth_failed"), ("not a login", SERVICE_PASSWORD, "invalid_input"),
    (SERVICE, "", "invalid_input")])
def test_a_bad_service_account_is_not_saved(mass: MassEnv, ews: ExchangeHarness, login: str, password: str,
                                            code: str) -> None:
    seed_exchange(ews)
    answer = mass.client.put("/api/admin/connections/exchange", headers={"X-CSRF-Token": mass.csrf},
                             json={"login": login, "password": password, "ews_url": ews.ews_url})
    assert answer.status_code >= 400 and answer.json["error"]["code"] == code, answer.get_data(as_text=True)
    assert not services().store.org_access.get(ORG).exchange_login


@pytest.mark.parametrize(("address_name", "check", "code"), [
    ("bob", "ok", None), ("gina", "refused", "impersonation_denied"), ("erin", "refused", "mailbox_not_found")])
def test_the_test_button_checks_one_mailbox(exch: MassEnv, address_name: str, check: str, code: str | None) -> None:
    answer = exch.post("/api/admin/connections/exchange/check", json={"address": address(address_name)})
    assert answer.status_code == 200 and answer.json["check"] == check and answer.json["check_code"] == code


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_person_gets_their_result(exch: MassEnv, name: str) -> None:
    (row,) = activate_exchange(exch, [name])["results"]
    assert row["result"] == EXPECTED[name], row
    mailbox = services().store.mailboxes.get(exch.uid(name)) if name != "carol" else None
    if EXPECTED[name] == "activated":
        assert mailbox is not None and mailbox.state is SyncState.RUNNING and mailbox.provider == "exchange"
        assert mailbox.connection["impersonation"] and mailbox.connection["login"] == SERVICE
        assert mailbox.connection["via"] == "mass_activation"
    elif name != "ivan":
        assert mailbox is None or mailbox.state is SyncState.NOT_ACTIVATED


def test_running_it_twice_changes_nothing(exch: MassEnv) -> None:
    names = sorted(EXPECTED)
    first = {r["address"]: r["result"] for r in activate_exchange(exch, names)["results"]}
    store = services().store
    before = {n: store.mailboxes.get(exch.uid(n)) for n in names if n != "carol"}
    second = {r["address"]: r["result"] for r in activate_exchange(exch, names)["results"]}
    expected_again = {a: ("already_active" if r == "activated" else r) for a, r in first.items()}
    assert second == expected_again
    after = {n: store.mailboxes.get(exch.uid(n)) for n in names if n != "carol"}
    assert after == before


def _mail(ews: ExchangeHarness, name: str, subject: str) -> None:
    ews.state.add_email(address(name), "inbox", subject=subject, sender=CUSTOMER, to=[address(name)])


def test_a_run_reads_the_impersonated_mailbox_and_writes_as_the_person(exch: MassEnv, ews: ExchangeHarness) -> None:
    exch.sf.state.rest.add_contact(CUSTOMER)
    activate_exchange(exch, ["bob", "jill"])
    for name in ("bob", "jill"):
        _mail(ews, name, f"Quote for {name}")
        record = sync_mailbox(exch.uid(name))
        assert record["status"] == "ok" and record["counts"]["written"] == 1, record
    messages = exch.sf.state.rest.all("EmailMessage")
    assert {m["Subject"]: m["CreatedById"] for m in messages} == {
        "Quote for bob": exch.sf_id("bob"), "Quote for jill": exch.sf_id("jill")}


def test_a_changed_password_breaks_the_org_once_and_everyone_resumes_after_the_fix(exch: MassEnv,
                                                                                  ews: ExchangeHarness) -> None:
    store = services().store
    exch.sf.state.rest.add_contact(CUSTOMER)
    activate_exchange(exch, ["bob", "jill"])
    for name in ("bob", "jill"):
        _mail(ews, name, f"Hello {name}")
        assert sync_mailbox(exch.uid(name))["counts"]["written"] == 1
    cursors = {name: store.mailboxes.cursors(exch.uid(name)) for name in ("bob", "jill")}

    ews.state.users[SERVICE].password = "rotated-Passw0rd"
    with pytest.raises(AuthRevoked):
        sync_mailbox(exch.uid("bob"))
    access = store.org_access.get(ORG)
    assert access.is_broken("exchange")
    for name in ("bob", "jill"):
        mailbox = store.mailboxes.get(exch.uid(name))
        assert mailbox is not None and mailbox.state is SyncState.DISABLED_ERROR
        assert mailbox.error is not None
        assert mailbox.error["message"] == "Disabled due to an error (organisation connection)"
        assert mailbox.auth_failures == 0
    queue = services().queue(QUEUE_NOTIFY)
    assert queue.job_ids == [f"orgnotify-{ORG}-{access.broken['exchange']['incident']}"]
    job = queue.fetch_job(queue.job_ids[0])
    assert job is not None and send_org_notice(*job.args)
    (sent,) = exch.sink.messages
    assert sent.rcpt_tos == [ADMIN_ADDRESS] and "Exchange" in sent.message["Subject"]
    assert SERVICE in sent.message.get_content()
    assert "Microsoft 365" not in sent.message.get_content()

    still = exch.post("/api/admin/connections/exchange/check", json={"address": address("bob")}).json
    assert still["check"] == "refused" and still["resumed"] == 0 and still["state"] == "broken"
    saved = set_up_service_account(exch, ews, "rotated-Passw0rd")
    assert saved.status_code == 200, saved.get_data(as_text=True)
    fixed = exch.post("/api/admin/connections/exchange/check", json={"address": address("bob")}).json
    assert fixed["check"] == "ok" and fixed["resumed"] == 2 and fixed["state"] == "ok"
    for name in ("bob", "jill"):
        assert store.mailboxes.get(exch.uid(name)).state is SyncState.RUNNING  # type: ignore[union-attr]
        assert store.mailboxes.cursors(exch.uid(name)) == cursors[name]
    _mail(ews, "jill", "After the fix")
    record = sync_mailbox(exch.uid("jill"))
    assert record["counts"]["written"] == 1 and record["counts"]["duplicates"] == 0, record
    assert len(exch.sink.messages) == 1


def test_one_mailbox_taken_out_of_scope_is_not_the_orgs_breakage(exch: MassEnv, ews: ExchangeHarness) -> None:
    activate_exchange(exch, ["bob"])
    ews.state.impersonation[SERVICE].discard(address("bob"))
    with pytest.raises(AuthRevoked):
        sync_mailbox(exch.uid("bob"))
    assert not services().store.org_access.get(ORG).is_broken("exchange")




def _picker(mass: MassEnv) -> dict[str, tuple[bool, str, str | None]]:
    answer = mass.client.get("/api/admin/connections")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return {row["provider"]: (row["ready"], row["state"], row["missing"]) for row in answer.json["providers"]}


def test_the_activate_picker_says_which_providers_are_set_up(mass: MassEnv, ews: ExchangeHarness) -> None:
    store = services().store
    # The provider map, not a hard-coded list: every provider mass activation supports is listed.
    assert sorted(_picker(mass)) == sorted(ORG_PROVIDERS)
    assert _picker(mass)["microsoft"] == (True, "ok", None)
    assert _picker(mass)["exchange"] == (False, "not_connected", EXCHANGE.missing)

    seed_exchange(ews)
    assert set_up_service_account(mass, ews).status_code == 200
    assert _picker(mass)["exchange"] == (True, "ok", None)
    store.org_access.mark_broken(ORG, "exchange", "auth_failed", "The password was changed.")
    assert _picker(mass)["exchange"] == (True, "broken", None)
    assert _picker(mass)["microsoft"] == (True, "ok", None)


def test_the_picker_list_is_for_admins_only(mass: MassEnv) -> None:
    anonymous = mass.app.test_client().get("/api/admin/connections")
    assert anonymous.status_code == 401, anonymous.get_data(as_text=True)


def test_the_users_list_says_a_mass_activated_mailbox_is_read_with_the_service_account(exch: MassEnv) -> None:
    activate_exchange(exch, ["bob"])
    rows = exch.client.get("/api/admin/users", query_string={"provider": "exchange"}).json["users"]
    assert [(r["id"], r["access_type"]) for r in rows] == [(exch.uid("bob"), "impersonation")], rows


def test_disconnecting_forgets_the_service_account_and_stops_everyone_read_with_it(exch: MassEnv) -> None:
    from backend.connectors.exchange.impersonation import SECRET_PASSWORD

    activate_exchange(exch, ["bob", "jill"])
    answer = exch.client.delete("/api/admin/connections/exchange", headers={"X-CSRF-Token": exch.csrf})
    assert answer.status_code == 200 and answer.json["deactivated"] == 2, answer.get_data(as_text=True)
    store = services().store
    assert store.org_access.get_secret(ORG, SECRET_PASSWORD) is None
    assert not store.redis.keys(store.keys("secret", "org", ORG, "*"))
    view = exch.client.get("/api/admin/connections/exchange").json
    assert not view["connected"] and not view["password_saved"] and view["login"] is None
    assert all(store.mailboxes.get(exch.uid(n)).state is SyncState.DEACTIVATED  # type: ignore[union-attr]
               for n in ("bob", "jill"))
    assert store.org_access.get(ORG).microsoft_tenant == exch.tenant  # the other connections stay
