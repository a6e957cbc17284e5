"""``flask org set/show`` goes through the console's policy code: values, locks, the same refusals."""

from __future__ import annotations

import json
from typing import Any

import redis

from backend import create_app
from backend.extensions import services

ORG = "00D000000000001EAA"  # a checksummed org id, as the CLI wants


def test_org_set_locks_and_unlocks(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    app = create_app(app_config)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["org", "set", ORG, "--no-sync-events", "--lock", "sync_events", "--backfill-days",
                                 "10", "--cancelled-events", "delete"])
    assert result.exit_code == 0, result.output
    shown = json.loads(runner.invoke(args=["org", "show", ORG]).output)
    assert shown["sync_events"] is False and shown["locked"] == ["sync_events"] and shown["backfill_days"] == 10
    assert shown["cancelled_events"] == "delete"
    assert runner.invoke(args=["org", "set", ORG, "--unlock", "sync_events"]).exit_code == 0
    with app.app_context():
        assert services().store.orgs.get(ORG).locked == []
        assert [e["actor"] for e in services().store.audit.recent(ORG)] == ["cli", "cli"]


def test_org_set_refuses_what_the_console_refuses(app_config: dict[str, Any], redis_client: redis.Redis) -> None:
    runner = create_app(app_config).test_cli_runner()
    for args, message in ((["--lock", "api_max"], "Unknown policy value"),
                          (["--backfill-days", "400"], "backfill_days must be")):
        result = runner.invoke(args=["org", "set", ORG, *args])
        assert result.exit_code != 0 and message in result.output, result.output


def test_org_set_decides_what_people_may_do_with_mass_activated_mailboxes(app_config: dict[str, Any],
                                                                          redis_client: redis.Redis) -> None:
    runner = create_app(app_config).test_cli_runner()
    shown = json.loads(runner.invoke(args=["org", "show", ORG]).output)
    assert shown["mass_activated_may_pause"] is True and shown["mass_activated_may_deactivate"] is False
    result = runner.invoke(args=["org", "set", ORG, "--no-mass-activated-may-pause",
                                 "--mass-activated-may-deactivate"])
    assert result.exit_code == 0, result.output
    shown = json.loads(runner.invoke(args=["org", "show", ORG]).output)
    assert shown["mass_activated_may_pause"] is False and shown["mass_activated_may_deactivate"] is True
    refused = runner.invoke(args=["org", "set", ORG, "--lock", "mass_activated_may_pause"])
    assert refused.exit_code != 0 and "has no lock" in refused.output, refused.output
