"""Settings: read in one place, refused at start with one clear line when missing or malformed."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from backend.config import ConfigError, Settings

GOOD: dict[str, Any] = {
    "SECRET_KEY": "k" * 40,
    "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SALESFORCE_CLIENT_ID": "id",
    "SALESFORCE_CLIENT_SECRET": "secret",
}


def test_production_defaults_match_the_contract() -> None:
    s = Settings.load(GOOD)
    assert s.SIDEBAR_ENV == "production"
    assert s.PUBLIC_BASE_URL == "https://localhost:3000"
    assert s.SALESFORCE_LOGIN_URL == "https://login.salesforce.com"
    assert s.MS_AUTHORITY == "https://login.microsoftonline.com/organizations"
    assert s.GRAPH_URL == "https://graph.microsoft.com"
    assert (s.SYNC_INTERVAL_SECONDS, s.BACKFILL_DAYS, s.MAX_AUTH_FAILURES, s.SF_API_BUDGET_PERCENT) == (1800, 6, 6, 80)
    assert s.REQUIRE_MAILBOX_PROOF is True


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ENCRYPTION_KEYS", "REDIS_URL",
                                     "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET"])
def test_production_refuses_to_start_without_required_settings(missing: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigError) as exc:
        Settings.load(env)
    message = str(exc.value)
    assert missing in message and "\n" not in message


def test_development_needs_no_secrets_and_proof_is_off() -> None:
    s = Settings.load({"SIDEBAR_ENV": "development"})
    assert s.development and s.REQUIRE_MAILBOX_PROOF is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ENCRYPTION_KEYS", "not-a-key"),
        ("SYNC_INTERVAL_SECONDS", "soon"),
        ("SYNC_INTERVAL_SECONDS", "5"),
        ("MAX_AUTH_FAILURES", "0"),
        ("SF_API_BUDGET_PERCENT", "101"),
        ("REQUIRE_MAILBOX_PROOF", "maybe"),
        ("PUBLIC_BASE_URL", "http://example.com"),
        ("SALESFORCE_LOGIN_URL", "login.salesforce.com"),
        ("SIDEBAR_ENV", "staging"),
        ("SECRET_KEY", "short"),
        ("OUTBOUND_CA_BUNDLE", "/nonexistent/ca.pem"),
        ("SMTP_URL", "smtp://localhost:25"),
    ],
)
def test_malformed_settings_are_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load({**GOOD, name: value})
    assert name in str(exc.value)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"SYNC_RUN_DEADLINE_SECONDS": "0"}, "SYNC_RUN_DEADLINE_SECONDS"),
        ({"SYNC_RUN_DEADLINE_SECONDS": "-5"}, "SYNC_RUN_DEADLINE_SECONDS"),
        ({"SYNC_RUN_DEADLINE_SECONDS": "twenty minutes"}, "SYNC_RUN_DEADLINE_SECONDS"),
        ({"SYNC_RUN_DEADLINE_SECONDS": "1.5"}, "SYNC_RUN_DEADLINE_SECONDS"),
        ({"SALESFORCE_WRITE_TIMEOUT_SECONDS": "0"}, "SALESFORCE_WRITE_TIMEOUT_SECONDS"),
        ({"SALESFORCE_WRITE_TIMEOUT_SECONDS": "-1"}, "SALESFORCE_WRITE_TIMEOUT_SECONDS"),
        ({"SALESFORCE_WRITE_TIMEOUT_SECONDS": "3 min"}, "SALESFORCE_WRITE_TIMEOUT_SECONDS"),
        # The run's deadline must outlast its longest request (else a slow write ends as a run timeout).
        ({"SYNC_RUN_DEADLINE_SECONDS": "180"}, "SALESFORCE_WRITE_TIMEOUT_SECONDS"),
        ({"SYNC_RUN_DEADLINE_SECONDS": "60", "SALESFORCE_WRITE_TIMEOUT_SECONDS": "120"}, "SYNC_RUN_DEADLINE_SECONDS"),
    ],
)
def test_the_run_deadline_and_the_write_timeout_are_positive_and_ordered(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Settings.load({**GOOD, **values})
    assert named in str(exc.value) and "\n" not in str(exc.value)


def test_the_run_deadline_and_the_write_timeout_default_to_20_and_3_minutes() -> None:
    s = Settings.load(GOOD)
    assert (s.SYNC_RUN_DEADLINE_SECONDS, s.SALESFORCE_WRITE_TIMEOUT_SECONDS) == (1200, 180)
    small = Settings.load({**GOOD, "SYNC_RUN_DEADLINE_SECONDS": "3", "SALESFORCE_WRITE_TIMEOUT_SECONDS": "2"})
    assert (small.SYNC_RUN_DEADLINE_SECONDS, small.SALESFORCE_WRITE_TIMEOUT_SECONDS) == (3, 2)


def test_lists_and_booleans_are_parsed() -> None:
    s = Settings.load({**GOOD, "EWS_ALLOWED_HOSTS": " mail.corp.example, *.lab.example ,",
                       "REQUIRE_MAILBOX_PROOF": "off", "ENCRYPTION_KEYS": f"{GOOD['ENCRYPTION_KEYS']},"
                       f"{Fernet.generate_key().decode()}"})
    assert s.EWS_ALLOWED_HOSTS == ("mail.corp.example", "*.lab.example")
    assert s.REQUIRE_MAILBOX_PROOF is False
    assert len(s.ENCRYPTION_KEYS) == 2


@pytest.mark.parametrize(
    "command",
    [
        ["-c", "import backend.wsgi"],  # web (gunicorn imports this module)
        ["-m", "rq.cli", "cron", "backend.jobs.clock"],  # clock
        ["-m", "rq.cli", "worker", "-w", "backend.jobs.worker.Worker", "--url", "{redis}"],  # worker
    ],
    ids=["web", "clock", "worker"],
)
def test_every_process_stops_with_one_line_when_misconfigured(command: list[str], redis_url: str) -> None:
    import subprocess
    import sys
    from pathlib import Path

    env = {"PATH": "/usr/bin:/bin", "SIDEBAR_ENV": "production", "PYTHONPATH": str(Path(__file__).parent.parent)}
    command = [part.replace("{redis}", redis_url) for part in command]
    proc = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).parent.parent))
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 1 and "SECRET_KEY" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_setting_is_documented_in_the_readme() -> None:
    from dataclasses import fields
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [f.name for f in fields(Settings) if f.name != "extra" and f"`{f.name}`" not in readme]
    assert not missing, f"settings missing from the README's table: {missing}"


def test_config_imports_nothing_from_the_package() -> None:
    # config is the bottom layer: its start checks (keys, host patterns) must not pull in backend modules.
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, backend.config; print(sorted(m for m in sys.modules if m.startswith('backend')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                          cwd=str(Path(__file__).parent.parent))
    assert proc.stdout.strip() == "['backend', 'backend.config', 'backend.config.syntax']"
