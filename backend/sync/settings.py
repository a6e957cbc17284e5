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
    for line, raw in enumerate(value, start=1):
        if not isinstance(raw, str):
            raise ValueError("Each blocklist entry must be text.")
        entry = raw.strip().lower()
        if entry.startswith("@"):
            entry = entry[1:]
        if not entry:
            continue
        # The pane sends one entry per line of its text box: the message names the line at fault.
        wrong = f"Line {line} ({raw.strip()[:80]}) is not an email address or domain."
        if "@" in entry:
            domain = entry.rpartition("@")[2]
            try:
                ascii_part = domain.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(wrong) from None
            if not _ADDRESS.match(entry) or not _DOMAIN.match(ascii_part):
                raise ValueError(wrong)
        else:
            try:
                ascii_domain = entry.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(wrong) from None
            if not _DOMAIN.match(ascii_domain):
                raise ValueError(wrong)
        if entry not in result:
            result.append(entry)
    return result
