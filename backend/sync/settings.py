"""Validation of the user's sync settings (blocklist entries are addresses or domains)."""

from __future__ import annotations

import re
from typing import Any

MAX_BLOCKLIST_ENTRIES = 500
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_ADDRESS = re.compile(r"^[^@\s]{1,64}@[^@\s]+$")


def normalise_blocklist(value: Any) -> list[str]:
    """Lower-cased, de-duplicated addresses and domains ("@acme.com" and "acme.com" both mean the domain)."""
    if isinstance(value, str):
        value = [part for part in re.split(r"[\s,;]+", value) if part]
    if not isinstance(value, list):
        raise ValueError("The blocklist must be a list of email addresses and domains.")
    if len(value) > MAX_BLOCKLIST_ENTRIES:
        raise ValueError(f"The blocklist can hold at most {MAX_BLOCKLIST_ENTRIES} entries.")
    result: list[str] = []
    for raw in value:
        if not isinstance(raw, str):
            raise ValueError("Each blocklist entry must be text.")
        entry = raw.strip().lower()
        if entry.startswith("@"):
            entry = entry[1:]
        if not entry:
            continue
        if "@" in entry:
            domain = entry.rpartition("@")[2]
            if not _ADDRESS.match(entry) or not _DOMAIN.match(domain.encode("idna").decode("ascii")):
                raise ValueError(f"{raw!r} is not an email address or domain.")
        else:
            try:
                ascii_domain = entry.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(f"{raw!r} is not an email address or domain.") from None
            if not _DOMAIN.match(ascii_domain):
                raise ValueError(f"{raw!r} is not an email address or domain.")
        if entry not in result:
            result.append(entry)
    return result
