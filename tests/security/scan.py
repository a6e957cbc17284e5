"""The secret scan: every Redis key and value of a database, and log text, searched for known secrets.

A secret counts as leaked when it shows up in clear, URL-encoded, JSON-escaped or base64'd (at any
of the three byte alignments, so a secret inside a longer encoded value is found too). What Redis
holds is read as RQ packs it: a job's ``data`` is a zlib-compressed pickle of (function, instance,
args, kwargs), results and tracebacks in ``rq:results:*`` streams are base64'd and compressed; each
value is unpacked (base64, zlib, pickle) before the search. A hash of a secret is fine: it contains
none of these forms. PEM keys are searched by each line of their base64 body.
"""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import redis

from tests.sfhelpers import bytes_client, unpacked_forms, values_of

# Shorter values would match by chance (ids, words); the secrets this product handles are longer.
MIN_SECRET = 8
PEM_MARKERS = ("-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN EC PRIVATE KEY-----")


@dataclass(frozen=True)
class Secret:
    """One secret to look for, and what it is (shown in a finding, never the value)."""

    name: str
    value: str


@dataclass(frozen=True)
class Finding:
    """Where a secret was found, and in which form."""

    secret: str
    form: str
    where: str


def _b64_forms(raw: bytes) -> set[str]:
    """The base64 text ``raw`` leaves inside any longer base64 value, at each of the three alignments."""
    found: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for shift in range(3):
            text = encode(b"\0" * shift + raw).decode().rstrip("=")
            # Drop the characters the alignment bytes or the unknown next bytes share with the secret.
            start = 0 if shift == 0 else 4
            core = text[start:len(text) - 4]
            if len(core) >= MIN_SECRET:
                found.add(core)
    return found


def needles(secret: Secret) -> dict[str, str]:
    """The forms of ``secret`` to search for: form name -> text."""
    value = secret.value.strip()
    if any(marker in value for marker in PEM_MARKERS) or "PRIVATE KEY-----" in value:
        lines = [line.strip() for line in value.splitlines() if line.strip() and "-----" not in line]
        return {f"pem line {i}": line for i, line in enumerate(lines) if len(line) >= 40}
    if len(value) < MIN_SECRET:
        raise ValueError(f"{secret.name} is too short to scan for ({len(value)} characters)")
    forms = {"clear": value, "url": quote(value, safe=""), "url+": quote_plus(value),
             "json": json.dumps(value)[1:-1]}
    for i, text in enumerate(sorted(_b64_forms(value.encode()))):
        forms[f"base64 {i}"] = text
    return forms


def readable(stored: bytes) -> list[str]:
    """A stored value as the texts it holds: as is, base64-decoded, decompressed, unpickled."""
    forms = unpacked_forms(stored)
    texts = [form.decode("utf-8", "replace") for form in forms]
    for form in forms:
        texts.extend(_unpickled(form))
    return texts


def _unpickled(form: bytes) -> list[str]:
    """What a pickle holds (RQ's job data: function, args, kwargs; results), as text; nothing if it is none."""
    if not form.startswith(b"\x80"):
        return []
    try:
        value = pickle.loads(form)  # noqa: S301 - our own test database, written by our own workers
    except Exception:  # not a pickle, or one of a class this process lacks
        return []
    return [repr(value), *_strings(value)]


def _strings(value: Any) -> Iterable[str]:
    """Every string inside a pickled value, bytes decoded (a secret in bytes in args shows too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes):
        yield value.decode("utf-8", "replace")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def redis_texts(client: redis.Redis) -> dict[str, str]:
    """Every key of the client's database -> the text of everything it holds (all types, unpacked)."""
    raw = bytes_client(client)
    found: dict[str, str] = {}
    try:
        for key in raw.scan_iter(count=1000):
            name = key.decode("utf-8", "replace")
            found[name] = "\n".join([name, *(text for v in values_of(raw, key) for text in readable(v))])
    finally:
        raw.close()
    return found


def scan(texts: dict[str, str], secrets: Iterable[Secret]) -> list[Finding]:
    """Every (secret, form, place) where a secret shows in ``texts`` (place -> text)."""
    findings: list[Finding] = []
    for secret in secrets:
        for form, needle in needles(secret).items():
            findings.extend(Finding(secret.name, form, where) for where, text in texts.items() if needle in text)
    for where, text in texts.items():
        findings.extend(Finding("a private key", "PEM", where) for marker in PEM_MARKERS if marker in text)
    return findings


def assert_no_secret(texts: dict[str, str], secrets: Iterable[Secret]) -> int:
    """Fail naming each leak (secret's name, form and place, never its value); returns the secrets checked."""
    checked = list(secrets)
    assert checked, "nothing to scan for"
    findings = scan(texts, checked)
    assert not findings, "secrets in clear:\n" + "\n".join(f"{f.secret} ({f.form}) in {f.where}" for f in findings)
    return len(checked)
