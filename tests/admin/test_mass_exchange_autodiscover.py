"""The org's Exchange service account saved without an EWS URL: Autodiscover finds it, activation and runs use it.

The fake Exchange server answers as ``autodiscover.acme.example`` and ``mail.acme.example`` (a
certificate with those names); a resolver stand-in (``Clients.dns_resolver``, as a deployment with
split DNS gives one) sends those names to loopback, and nothing else resolves. So every step that
reaches Exchange - Save, activation's directory, the run - must go through the discovered URL and
the app's resolver.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from backend.connectors.exchange.impersonation import SECRET_PASSWORD
from backend.extensions import services
from backend.jobs.sync import sync_mailbox
from sandbox.harness.exchange import ExchangeHarness
from sandbox.tls import TestCA
from tests.exchange_mass_env import SERVICE, SERVICE_PASSWORD, activate_exchange, seed_exchange
from tests.mass_env import DOMAIN, ORG, MassEnv, address

NAMES = (f"autodiscover.{DOMAIN}", f"mail.{DOMAIN}")
CUSTOMER = "customer@client.example"


@pytest.fixture
def ews(ca: TestCA) -> Iterator[ExchangeHarness]:
    """The fake Exchange under its DNS names; its Autodiscover hands out ``https://mail.acme.example:<port>``."""
    harness = ExchangeHarness(ca.ca_path, ca.issue("ews-autodiscover", hosts=(*NAMES, "127.0.0.1", "localhost")))
    harness.state.ews_url = f"https://mail.{DOMAIN}:{harness.server.port}/EWS/Exchange.asmx"
    yield harness
    harness.close()


@pytest.fixture
def mass_config(mass_config: dict[str, Any], ews: ExchangeHarness) -> dict[str, Any]:
    """Mass activation's settings with the fake Exchange trusted, Autodiscover's candidate on the login's domain."""
    return {**mass_config, **ews.settings_overrides(), "EWS_ALLOWED_HOSTS": "127.0.0.1",
            "EWS_AUTODISCOVER_URLS": f"https://autodiscover.{{domain}}:{ews.server.port}/autodiscover/autodiscover.xml"}


def _resolve(host: str, port: int) -> list[Any]:
    if host.lower() in NAMES:
        return [(socket.AF_INET, ("127.0.0.1", port))]
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.fixture
def split_dns(mass: MassEnv) -> MassEnv:
    """The app's resolver stand-in: only the fake's names resolve (to loopback)."""
    services().clients.dns_resolver = _resolve
    return mass


def _save(mass: MassEnv, body: dict[str, str]) -> Any:
    return mass.client.put("/api/admin/connections/exchange", headers={"X-CSRF-Token": mass.csrf}, json=body)


def test_an_empty_ews_url_is_found_by_autodiscover_and_activation_and_runs_use_it(
        split_dns: MassEnv, ews: ExchangeHarness) -> None:
    seed_exchange(ews)
    saved = _save(split_dns, {"login": SERVICE, "password": SERVICE_PASSWORD, "ews_url": ""})
    assert saved.status_code == 200, saved.get_data(as_text=True)
    assert ews.state.operations[0] == "Autodiscover" and ews.state.autodiscover_emails == [SERVICE]
    view = split_dns.client.get("/api/admin/connections/exchange").json
    assert view["autodiscovered"] is True and view["ews_url"] == ews.state.ews_url, view
    assert view["state"] == "ok" and view["password_saved"] and SERVICE_PASSWORD not in str(view)

    split_dns.sf.state.rest.add_contact(CUSTOMER)
    (row,) = activate_exchange(split_dns, ["bob"])["results"]
    assert row["result"] == "activated", row
    mailbox = services().store.mailboxes.get(split_dns.uid("bob"))
    assert mailbox is not None and mailbox.connection["impersonation"]
    ews.state.add_email(address("bob"), "inbox", subject="Found it", sender=CUSTOMER, to=[address("bob")])
    record = sync_mailbox(split_dns.uid("bob"))
    assert record["status"] == "ok" and record["counts"]["written"] == 1, record
    assert [m["Subject"] for m in split_dns.sf.state.rest.all("EmailMessage")] == ["Found it"]
    # Every request reached the fake under a name from Autodiscover, none under a bare address.
    hosts = {c.headers.get("Host", "").split(":")[0] for c in ews.server.recorder.calls}
    assert hosts == set(NAMES), hosts


@pytest.mark.parametrize("body", [
    pytest.param({"login": "ACME\\svc-sync", "address": f"nobody@{DOMAIN}"}, id="address-unknown-to-autodiscover"),
    pytest.param({"login": "ACME\\svc-sync", "address": "svc-sync@elsewhere.example"}, id="no-autodiscover-host"),
])
def test_autodiscover_finding_nothing_is_the_setup_error_and_saves_nothing(split_dns: MassEnv,
                                                                         ews: ExchangeHarness,
                                                                         body: dict[str, str]) -> None:
    seed_exchange(ews)
    answer = _save(split_dns, {**body, "password": SERVICE_PASSWORD})
    assert answer.status_code == 502 and answer.is_json, answer.get_data(as_text=True)
    error = answer.json["error"]
    assert error["code"] == "ews_unreachable" and "EWS URL" in error["message"], error
    assert SERVICE_PASSWORD not in answer.get_data(as_text=True)
    store = services().store
    assert not store.org_access.get(ORG).exchange_login
    assert not store.org_access.has_secret(ORG, SECRET_PASSWORD)
    assert split_dns.client.get("/api/admin/connections/exchange").json["state"] == "not_connected"
