"""Mass activation through on-premises Exchange: the org's service account in the fake EWS (ApplicationImpersonation).

The same people as :mod:`tests.mass_env`, their mailboxes on the fake Exchange server::

    bob, jill, dave, hank, ivan  granted to the service account       (bob, jill -> activated)
    erin                         no mailbox                           -> no_mailbox
    frank                        only a loose name match elsewhere    -> mailbox_mismatch
    gina                         mailbox outside the role's scope     -> not_allowed_by_tenant
"""

from __future__ import annotations

from typing import Any

import pytest

from backend.jobs.activation import run_activation
from sandbox.harness.exchange import ExchangeHarness
from sandbox.harness.graph import GraphHarness
from sandbox.smtp import SmtpSink
from tests.mass_env import DOMAIN, JWT_KEYS, MassEnv, address

SERVICE = f"svc-sync@{DOMAIN}"
SERVICE_PASSWORD = "svc-Passw0rd"


@pytest.fixture
def mass_config(app_config: dict[str, Any], graph: GraphHarness, smtp_sink: SmtpSink,
                ews: ExchangeHarness) -> dict[str, Any]:
    """Mass activation's settings, and the fake Exchange server allowed and trusted."""
    return {**app_config, **graph.settings_overrides(), **ews.settings_overrides(),
            "SALESFORCE_JWT_PRIVATE_KEY": JWT_KEYS[0], "SMTP_URL": smtp_sink.url, "MAIL_FROM": "sync@sidebar.example"}


@pytest.fixture
def exch(mass: MassEnv, ews: ExchangeHarness) -> MassEnv:
    """The org's service account set up through the console API."""
    seed_exchange(ews)
    saved = set_up_service_account(mass, ews)
    assert saved.status_code == 200, saved.get_data(as_text=True)
    return mass


def seed_exchange(ews: ExchangeHarness) -> None:
    """The service account, the people's mailboxes, and which of them the role's scope covers."""
    state = ews.state
    state.add_user(SERVICE, SERVICE_PASSWORD, account="svc-sync", display_name="Sidebar Sync service")
    for name in ("dave", "hank", "ivan", "jill", "gina"):
        state.add_user(address(name), f"{name}-pw", account=name, display_name=name.capitalize())
    state.add_user(f"frank.other@{DOMAIN}", "frank-pw", account="frank.other",
                   display_name=f"{address('frank')} (old)")
    state.impersonation[SERVICE] = {address(n) for n in ("bob", "jill", "dave", "hank", "ivan", "frank.other")}


def set_up_service_account(mass: MassEnv, ews: ExchangeHarness, password: str = SERVICE_PASSWORD) -> Any:
    """The admin saves the service account in the console (PUT /api/admin/connections/exchange)."""
    return mass.client.put("/api/admin/connections/exchange", headers={"X-CSRF-Token": mass.csrf},
                           json={"login": SERVICE, "password": password, "ews_url": ews.ews_url})


def activate_exchange(mass: MassEnv, names: list[str]) -> dict[str, Any]:
    """POST /api/admin/activate for provider exchange, run the job here, answer its progress."""
    started = mass.post("/api/admin/activate", json={"provider": "exchange", "users": [address(n) for n in names]})
    assert started.status_code == 202, started.get_data(as_text=True)
    run_activation(started.json["job_id"])
    answer = mass.client.get(f"/api/admin/activations/{started.json['job_id']}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return dict(answer.json)
