"""Flask commands: ``flask keys``, ``manifest render``, ``sync run-once``, ``org``, ``directory rebuild``."""

from __future__ import annotations

import os
import re

import click
from flask import Flask
from flask.cli import AppGroup

from backend.extensions import services
from backend.security.crypto import generate_key

keys_cli = AppGroup("keys", help="Encryption keys for secrets at rest.")
manifest_cli = AppGroup("manifest", help="The Outlook add-in manifest.")
sync_cli = AppGroup("sync", help="Sync runs.")
org_cli = AppGroup("org", help="The policy of a Salesforce org (the same as the admin console's).")
directory_cli = AppGroup("directory", help="The admin console's index of each org's users.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret and meeting key under the first key of ENCRYPTION_KEYS."""
    store = services().store
    rotated, unreadable = store.secrets.rotate_all()
    # The meeting map seals each meeting's key with the same keys: left behind, its cancellations
    # would be lost once the old key is dropped.
    meetings, unreadable_meetings = store.meetings.rotate_all()
    click.echo(f"re-encrypted {rotated} secret(s) and {meetings} meeting key(s) under the current key")
    if unreadable:
        click.echo(f"{unreadable} secret(s) could not be decrypted with any configured key", err=True)
    if unreadable_meetings:
        click.echo(f"{unreadable_meetings} meeting key(s) could not be decrypted with any configured key", err=True)
    if unreadable or unreadable_meetings:
        raise SystemExit(1)


@keys_cli.command("generate")
def keys_generate() -> None:
    """Print a new key to put first in ENCRYPTION_KEYS."""
    click.echo(generate_key())


@manifest_cli.command("render")
@click.option("--base-url", default=None,
              help="https origin serving the task pane, e.g. https://localhost:3000 (default: PUBLIC_BASE_URL)")
@click.option("--out", "out", default=None, help="File to write (default: stdout)")
def manifest_render(base_url: str | None, out: str | None) -> None:
    """Render the Outlook XML manifest for BASE_URL (or PUBLIC_BASE_URL) from the one template."""
    from backend.manifest import BaseUrlError, ManifestError, render_manifest

    base_url = base_url or services().settings.PUBLIC_BASE_URL
    if not base_url:
        raise click.BadParameter("give --base-url or set PUBLIC_BASE_URL", param_hint="--base-url")
    try:
        xml = render_manifest(base_url, services().settings)
    except BaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--base-url") from None
    except ManifestError as exc:  # a setting the manifest needs is malformed
        raise click.ClickException(str(exc)) from None
    if out:
        with open(out, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(xml)
        click.echo(f"wrote {out}")
    else:
        click.echo(xml, nl=False)


@sync_cli.command("run-once")
@click.argument("mailbox_id")
def sync_run_once(mailbox_id: str) -> None:
    """Run sync once for MAILBOX_ID in this process (no queue) and print the run record."""
    import json

    click.echo(json.dumps(services().engine.run(mailbox_id), indent=2, default=str))


def _require_shared_redis() -> None:
    """Refuse org commands against a Redis nobody else uses (development without REDIS_URL nor scripts/dev)."""
    from backend.embedded_redis import EmbeddedRedis
    from backend.extensions import DEV_REDIS_DIR

    settings = services().settings
    if settings.REDIS_URL or not settings.development:
        return
    if not EmbeddedRedis(DEV_REDIS_DIR).alive():
        raise click.ClickException("No Redis to talk to: start scripts/dev first (its Redis holds the demo's "
                                   "orgs), or set REDIS_URL to the Redis your server uses.")


def _org_json(org_id: str) -> str:
    import dataclasses
    import json

    from backend.sync.policy import POLICY_NAMES

    settings = dataclasses.asdict(services().store.orgs.get(org_id))
    return json.dumps({k: settings[k] for k in ("org_id", *POLICY_NAMES, "locked")}, indent=2)


@org_cli.command("show")
@click.argument("org_id")
def org_show(org_id: str) -> None:
    """Print the policy of the org ORG_ID (its 15 or 18 character Salesforce id)."""
    org_id = _org_id_18(org_id)
    _require_shared_redis()
    click.echo(_org_json(org_id))


@org_cli.command("set")
@click.argument("org_id")
@click.option("--admin-email", default=None, help='Who also gets "sync stopped" emails and the digest ("" to clear).')
@click.option(
    "--internal-domains", default=None, help="Comma-separated domains of the org: mail only among them is not logged."
)
@click.option(
    "--blocklist", default=None, help="Comma-separated addresses and domains never logged for anyone in the org."
)
@click.option("--free-mail/--no-free-mail", "free_mail", default=None, help="Log (or not) mail with free-mail domains.")
@click.option("--sync-emails/--no-sync-emails", "sync_emails", default=None, help="Sync emails (default or locked).")
@click.option("--sync-events/--no-sync-events", "sync_events", default=None, help="Sync meetings.")
@click.option("--cancelled-events", type=click.Choice(["mark", "delete"]), default=None,
              help="What a cancelled meeting does to its Salesforce event.")
@click.option("--backfill-days", type=int, default=None, help="Days a first run reads (-1: the server's default).")
@click.option("--mass-activated-may-pause/--no-mass-activated-may-pause", "may_pause", default=None,
              help="Whether people may pause a mailbox an administrator mass-activated (default: yes).")
@click.option("--mass-activated-may-deactivate/--no-mass-activated-may-deactivate", "may_deactivate", default=None,
              help="Whether people may deactivate a mailbox an administrator mass-activated (default: no).")
@click.option("--lock", "lock", multiple=True, help="A policy name people may not change (repeatable).")
@click.option("--unlock", "unlock", multiple=True, help="A policy name that becomes a default again (repeatable).")
def org_set(
    org_id: str,
    admin_email: str | None,
    internal_domains: str | None,
    blocklist: str | None,
    free_mail: bool | None,
    sync_emails: bool | None,
    sync_events: bool | None,
    cancelled_events: str | None,
    backfill_days: int | None,
    may_pause: bool | None,
    may_deactivate: bool | None,
    lock: tuple[str, ...],
    unlock: tuple[str, ...],
) -> None:
    """Change the policy of the org ORG_ID; options not given keep their value (same checks as the console)."""
    from backend.sync.policy import PolicyError, policy_changes

    org_id = _org_id_18(org_id)
    _require_shared_redis()
    body: dict[str, object] = {}
    if admin_email is not None:
        body["admin_email"] = admin_email
    if internal_domains is not None:
        body["internal_domains"] = internal_domains
    if blocklist is not None:
        body["blocklist"] = blocklist
    if free_mail is not None:
        body["block_free_mail"] = not free_mail
    for name, value in (("sync_emails", sync_emails), ("sync_events", sync_events),
                        ("cancelled_events", cancelled_events), ("backfill_days", backfill_days),
                        ("mass_activated_may_pause", may_pause), ("mass_activated_may_deactivate", may_deactivate)):
        if value is not None:
            body[name] = value
    for name, locked in [*((n, True) for n in lock), *((n, False) for n in unlock)]:
        current = body.get(name)
        body[name] = {**({"value": current} if current is not None else {}), "locked": locked}
    if not body:
        raise click.UsageError("nothing to change: give at least one option")
    store = services().store
    try:
        changes = policy_changes(store.orgs.get(org_id), body)
    except PolicyError as exc:
        option = "--free-mail" if exc.field == "block_free_mail" else "--" + exc.field.replace("_", "-")
        raise click.BadParameter(str(exc), param_hint=option if exc.field in body else "--lock") from None
    if not store.users.org_user_ids(org_id):
        click.echo(f"note: nobody of org {org_id} has logged in yet; the settings apply once they do", err=True)
    if changes:
        store.orgs.update(org_id, **changes)
        store.audit.record(org_id, "cli", "settings", [org_id], {"changed": sorted(changes)})
    click.echo(_org_json(org_id))


_ORG_ID = re.compile(r"^00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _org_id_18(org_id: str) -> str:
    """The 18-character form of a Salesforce org id, as userinfo gives it and the store keys it."""
    org_id = org_id.strip()
    if not _ORG_ID.match(org_id):
        raise click.BadParameter(
            "not a Salesforce org id (15 or 18 letters and digits, starting 00D)", param_hint="ORG_ID"
        )
    # Salesforce's checksum: one suffix letter per 5-character chunk, a bit per upper-case letter.
    suffix = ""
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(org_id[start:start + 5]) if ch.isupper())
        suffix += _SUFFIX_CHARS[bits]
    if len(org_id) == 18 and org_id[15:].upper() != suffix:
        raise click.BadParameter("this 18-character org id does not check out (a typo?)", param_hint="ORG_ID")
    return org_id[:15] + suffix


@directory_cli.command("rebuild")
@click.argument("org_id", required=False)
def directory_rebuild(org_id: str | None) -> None:
    """Rebuild the console's index of ORG_ID's users (every org with users when omitted); idempotent."""
    store = services().store
    orgs = [org_id] if org_id else sorted({u.org_id for u in map(store.users.get, store.users.all_ids()) if u})
    for org in orgs:
        click.echo(f"{org}: {store.directory.rebuild(org)} user(s) indexed")


def register_commands(app: Flask) -> None:
    """Attach the command groups to ``app``."""
    app.cli.add_command(keys_cli)
    app.cli.add_command(manifest_cli)
    app.cli.add_command(sync_cli)
    app.cli.add_command(org_cli)
    app.cli.add_command(directory_cli)
