"""Mass activation through Google Workspace: the org's service account with domain-wide delegation in the fake Google.

The same people as :mod:`tests.mass_env`, their accounts in the fake Workspace (domain acme.example)::

    bob, jill, dave, hank, ivan   Workspace users                            (bob, jill -> activated)
    erin                          no Workspace user                          -> no_mailbox
    frank                         a former address of frank.other            -> mailbox_mismatch
    gina                          Gmail turned off for her organisational unit -> not_allowed_by_tenant
    ivan                          already syncs his own Gmail (consent)       -> already_active
"""

from __future__ import annotations

from typing import Any

import pytest

from backend.connectors.google import REFRESH_SECRET
from backend.connectors.google.delegation import DELEGATED_SCOPES
from backend.extensions import services
from backend.jobs.activation import run_activation
from sandbox.google_delegation import key_file_text, new_service_account_key
from sandbox.harness.graph import GraphHarness
from sandbox.smtp import SmtpSink
from tests.conftest import GoogleFake
from tests.mass_env import DOMAIN, JWT_KEYS, MassEnv, address

SA_EMAIL = "sidebar-sync@acme-sync.iam.gserviceaccount.com"
CLIENT_ID = "113456789012345678901"


@pytest.fixture
def mass_config(app_config: dict[str, Any], graph: GraphHarness, smtp_sink: SmtpSink,
                fake_google: GoogleFake) -> dict[str, Any]:
    """Mass activation's settings, with Google pointing at the fake."""
    return {**app_config, **graph.settings_overrides(), **fake_google.settings(),
            "SALESFORCE_JWT_PRIVATE_KEY": JWT_KEYS[0], "SMTP_URL": smtp_sink.url, "MAIL_FROM": "sync@sidebar.example"}


def seed_workspace(google: GoogleFake) -> dict[str, str]:
    """The Workspace's people, its admin's delegation entry for our client id; returns the service account's key."""
    state = google.google
    state.delegation.domains.add(DOMAIN)
    for name in ("alice", "bob", "dave", "gina", "hank", "ivan", "jill"):
        state.add_user(address(name), display_name=name.capitalize())
        google.gmail.mailbox(address(name))
        google.calendar.calendar(address(name))
    state.add_user(f"frank.other@{DOMAIN}")
    state.delegation.nicknames[address("frank")] = f"frank.other@{DOMAIN}"
    gina = state.find_user(address("gina"))
    assert gina is not None
    gina.gmail_enabled = False
    state.authorise_delegation(CLIENT_ID, DELEGATED_SCOPES)
    return new_service_account_key(state.delegation, SA_EMAIL, CLIENT_ID)


def ivan_uses_his_own_gmail(mass: MassEnv, google: GoogleFake) -> None:
    """Ivan connected his own Gmail (consent) before: mass activation must leave him alone."""
    store = services().store
    uid = mass.uid("ivan")
    store.mailboxes.activate(uid, "google", address("ivan"), connection={"via": "consent",
                                                                        "scopes": sorted(DELEGATED_SCOPES)})
    store.secrets.put("mailbox", uid, REFRESH_SECRET, google.google.grant_offline(address("ivan")))


def set_up_key(mass: MassEnv, key: dict[str, str] | str, domain: str = DOMAIN, **extra: Any) -> Any:
    """The admin uploads the JSON key in the console (PUT /api/admin/connections/google)."""
    text = key if isinstance(key, str) else key_file_text(key)
    return mass.client.put("/api/admin/connections/google", headers={"X-CSRF-Token": mass.csrf},
                           json={"key": text, "domain": domain, **extra})


def activate_google(mass: MassEnv, names: list[str]) -> dict[str, Any]:
    """POST /api/admin/activate for provider google, run the job here, answer its progress."""
    started = mass.post("/api/admin/activate", json={"provider": "google", "users": [address(n) for n in names]})
    assert started.status_code == 202, started.get_data(as_text=True)
    run_activation(started.json["job_id"])
    answer = mass.client.get(f"/api/admin/activations/{started.json['job_id']}")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return dict(answer.json)
