"""Mass activation's test environment: an admin's org in the fake Salesforce, a fake tenant, the JWT key.

People, one per per-person result::

    bob    Salesforce active, pre-authorised, mailbox in scope      -> activated
    carol  no Salesforce user                                       -> no_salesforce_user
    dave   Salesforce user inactive                                 -> salesforce_user_inactive
    erin   no Microsoft 365 account                                 -> no_mailbox
    frank  the account found by sign-in name receives mail elsewhere -> mailbox_mismatch
    gina   mailbox outside the app's RBAC scope                     -> not_allowed_by_tenant
    hank   not pre-authorised in Salesforce                         -> salesforce_not_authorized
    ivan   already syncs with his own connection                    -> already_active
    jill   like bob                                                 -> activated
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from backend.extensions import services
from backend.jobs.activation import run_activation
from backend.jobs.context import use_app
from backend.store.users import User, user_id_for
from sandbox.harness.graph import GraphHarness
from sandbox.login import LoggedIn, login
from sandbox.salesforce_jwt import jwt_key_pair
from sandbox.smtp import SmtpSink
from sandbox.tls import CertPair, TestCA
from tests.admin.helpers import console_login

ORG = "00D000000000001EAA"
DOMAIN = "acme.example"
EXPECTED = {
    "bob": "activated", "carol": "no_salesforce_user", "dave": "salesforce_user_inactive", "erin": "no_mailbox",
    "frank": "mailbox_mismatch", "gina": "not_allowed_by_tenant", "hank": "salesforce_not_authorized",
    "ivan": "already_active", "jill": "activated",
}
ADMIN_ADDRESS = "it-admin@acme.example"
JWT_KEYS = jwt_key_pair()


def address(name: str) -> str:
    """A person's address."""
    return f"{name}@{DOMAIN}"


@dataclass
class MassEnv:
    """The app, the admin's console client and CSRF token, the fakes."""

    app: Flask
    client: FlaskClient
    csrf: str
    graph: GraphHarness
    sf: Any
    sink: SmtpSink

    @property
    def tenant(self) -> str:
        """The fake tenant's id."""
        return str(self.graph.user.tid)

    def sf_id(self, name: str) -> str:
        """A person's Salesforce user id."""
        return str(self.sf.state.users[address(name)].user_id)

    def uid(self, name: str) -> str:
        """A person's user id of ours."""
        return user_id_for(ORG, self.sf_id(name))

    def post(self, path: str, **kwargs: Any) -> Any:
        """A console POST with the CSRF token."""
        return self.client.post(path, headers={"X-CSRF-Token": self.csrf}, **kwargs)

    def activate(self, names: list[str] | str) -> dict[str, Any]:
        """POST /api/admin/activate, run the job here, and answer GET /api/admin/activations/<id>."""
        users = names if isinstance(names, str) else [address(n) for n in names]
        started = self.post("/api/admin/activate", json={"provider": "microsoft", "users": users})
        assert started.status_code == 202, started.get_data(as_text=True)
        job_id = started.json["job_id"]
        run_activation(job_id)
        answer = self.client.get(f"/api/admin/activations/{job_id}")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return dict(answer.json)


def pane_login(mass: MassEnv, ca: Any, name: str) -> LoggedIn:
    """``name`` logs in in the sidebar (the real Salesforce dialog) in the add-in mailbox of their address."""
    mass.sf.state.users[address(name)].password = f"{name}-pw"
    return login(mass.app.test_client(), ca.ca_path, mailbox=address(name), username=address(name),
                 password=f"{name}-pw")


def seed(sf: Any, graph: GraphHarness) -> None:
    """The people of the module docstring in both fakes."""
    tid = graph.user.tid
    for name in ("bob", "dave", "erin", "frank", "gina", "hank", "ivan", "jill"):
        sf.state.add_user(address(name), email=address(name), name=name.capitalize())
        if name != "hank":
            sf.state.preauthorized.add(address(name))
    sf.state.users[address("dave")].is_active = False
    sf.state.jwt_certificates.append(JWT_KEYS[1])
    for name in ("bob", "dave", "gina", "hank", "ivan", "jill"):
        graph.ms.add_user(address(name), tid)
        graph.graph.mailbox(address(name))
    graph.ms.add_user(f"frank.other@{DOMAIN}", tid, upn=address("frank"))
    graph.ms.tenant(tid).app_access_scope = frozenset(
        address(n) for n in ("bob", "dave", "hank", "ivan", "jill", "frank.other"))


@pytest.fixture
def graph(server_cert: CertPair, ca: TestCA) -> Iterator[GraphHarness]:
    """A fake tenant whose administrator gave admin consent."""
    harness = GraphHarness(server_cert, ca.ca_path, app_only=True)
    yield harness
    harness.close()


@pytest.fixture
def mass_config(app_config: dict[str, Any], graph: GraphHarness, smtp_sink: SmtpSink) -> dict[str, Any]:
    """Settings pointing at the fakes, with the JWT key and an SMTP sink."""
    return {**app_config, **graph.settings_overrides(), "SALESFORCE_JWT_PRIVATE_KEY": JWT_KEYS[0],
            "SMTP_URL": smtp_sink.url, "MAIL_FROM": "sync@sidebar.example"}


@pytest.fixture
def mass(mass_config: dict[str, Any], redis_client: Any, fake_salesforce: Any, graph: GraphHarness,
         smtp_sink: SmtpSink, ca: TestCA) -> Iterator[MassEnv]:
    """Alice (an admin) in the console, her org's tenant connected, the people seeded; jobs run here."""
    from backend import create_app
    from sandbox.https_client import HttpsClient

    fake_salesforce.state.users["alice@acme.example"].is_admin = True
    seed(fake_salesforce, graph)
    app = create_app(mass_config)
    app.test_client_class = HttpsClient
    client = app.test_client()
    use_app(app)
    try:
        with app.app_context():
            csrf = console_login(client, ca.ca_path, "alice@acme.example", "alice-pw")
            store = services().store
            admin_uid = user_id_for(ORG, fake_salesforce.state.users["alice@acme.example"].user_id)
            store.org_access.connect_microsoft(ORG, graph.user.tid, admin_uid)
            store.orgs.update(ORG, admin_email=ADMIN_ADDRESS)
            env = MassEnv(app, client, csrf, graph, fake_salesforce, smtp_sink)
            _seed_ivan(env)
            yield env
    finally:
        use_app(None)


def _seed_ivan(env: MassEnv) -> None:
    """Ivan connected his own mailbox (delegated) before: mass activation must leave him alone."""
    store = services().store
    uid = env.uid("ivan")
    store.users.save(User(id=uid, org_id=ORG, sf_user_id=env.sf_id("ivan"), username=address("ivan"),
                          email=address("ivan")))
    store.mailboxes.ensure(uid, ORG)
    store.mailboxes.activate(uid, "microsoft", address("ivan"), connection={"home_account_id": "ivan-own"})
