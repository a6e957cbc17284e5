"""The one email of an org connection incident, for every org provider: its own words, how to fix it, no secret."""

from __future__ import annotations

import pytest

from backend.config import Settings
from backend.jobs.org_notify import org_broken_message
from backend.store.org_access import OrgAccess
from backend.sync.org_providers import ORG_PROVIDERS

ACCESS = OrgAccess(org_id="00D000000000001EAA", microsoft_tenant="tenant-0001", exchange_login="svc-sync@acme.example",
                   google_client_email="sync@acme.iam.gserviceaccount.com", google_client_id="113456789012345678901")
# What identifies each provider's org access in the email.
FACTS = {"microsoft": ["tenant-0001"], "exchange": ["svc-sync@acme.example"],
         "google": ["sync@acme.iam.gserviceaccount.com", "113456789012345678901", "Domain-wide delegation"]}
LABELS = {"microsoft": "Microsoft 365", "exchange": "Exchange", "google": "Google Workspace"}


@pytest.mark.parametrize("provider", sorted(ORG_PROVIDERS))
def test_every_org_provider_has_its_own_incident_email(provider: str) -> None:
    assert set(FACTS) == set(ORG_PROVIDERS)  # a new provider needs its wording here and in org_notify
    settings = Settings.load({"SIDEBAR_ENV": "development", "MAIL_FROM": "sync@sidebar.example"})
    access = OrgAccess(**{**ACCESS.__dict__, "broken": {provider: {
        "code": "org_connection", "message": "access refused for the test", "since": 0, "incident": "x-1"}}})
    message = org_broken_message(settings, access, provider, "it-admin@acme.example")
    text = message.get_content()
    assert LABELS[provider] in message["Subject"]
    assert all(fact in text for fact in FACTS[provider]), text
    assert "access refused for the test" in text and "/admin#access" in text
    others = {label for name, label in LABELS.items() if name != provider and label not in LABELS[provider]}
    assert not any(label in text or label in message["Subject"] for label in others), text
