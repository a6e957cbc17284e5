"""SOQL text: string literals, and ``IN`` lists cut to the statement and URI limits.

Lookups go as GET subrequests of a Composite request, so a statement must fit the URI limit once
URL-encoded, not just SOQL's own statement limit.
"""

from __future__ import annotations

# Limits of the platform (REST API developer guide).
SOQL_MAX_CHARS = 100_000
# A GET URI is limited to about 16 KB; keep a margin for the host and headers.
URI_MAX_CHARS = 15_500
# Characters a URI query may hold as themselves (RFC 3986 sub-delims and "@"), left unencoded so an
# IN list of Message-IDs fits about a fifth more values in a statement ("'<a@b>'" is 9 characters,
# not 15): fewer look-up queries per batch.
QUERY_SAFE = "'(),@"


# Bytes quote_plus leaves as one character: its always-safe set, our safe set, and the space (a "+").
_ONE_CHAR_BYTES = (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~ "
                   + QUERY_SAFE.encode("ascii"))


# quote_plus's output for each byte, indexed by the byte seen as a Latin-1 character: the same
# encoding done by one str.translate (quote_plus builds its result one byte at a time, 15 KB a
# look-up statement).
_QUOTED = {b: (chr(b) if b != 0x20 else "+") if bytes([b]) in _ONE_CHAR_BYTES else f"%{b:02X}" for b in range(256)}


def encoded_length(text: str) -> int:
    """``len(quote_plus(text, safe=QUERY_SAFE))``, counted without building the string."""
    # Every other UTF-8 byte becomes "%XX". This runs once per address and Message-ID of every batch.
    raw = text.encode("utf-8")
    return len(raw) + 2 * len(raw.translate(None, _ONE_CHAR_BYTES))


def encode_query(soql: str) -> str:
    """The ``q=...`` query string of a SOQL statement, as sent (what ``urlencode(..., safe=QUERY_SAFE)`` gives)."""
    return "q=" + soql.encode("utf-8").decode("latin-1").translate(_QUOTED)


def query_url(path: str, soql: str) -> str:
    """The URL of a query subrequest: ``{path}?q=...`` (``path`` ends in ``/query``)."""
    return f"{path}?{encode_query(soql)}"


def soql_quote(value: str) -> str:
    """A SOQL string literal (quotes, backslashes and control characters escaped)."""
    escaped = (
        value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
        .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t").replace("\b", "\\b").replace("\f", "\\f")
    )
    return f"'{escaped}'"


def chunk_in_list(prefix: str, values: list[str], suffix: str = "", *, path: str = "") -> list[str]:
    """SOQL statements ``prefix IN (...) suffix`` covering ``values``, each within the statement and URI limits.

    ``path`` is the request path the statement is sent to (``/services/data/vXX.X/query``); the
    URI length counts the URL-encoded statement.
    """
    return [statement for statement, _ in chunk_groups(prefix, values, suffix, path=path)]


def chunk_groups(prefix: str, values: list[str], suffix: str = "", *, path: str = "") -> list[tuple[str, list[str]]]:
    """As :func:`chunk_in_list`, each statement with the values it covers."""
    groups: list[tuple[str, list[str]]] = []
    base_chars = len(prefix) + len(suffix) + 2
    base_uri = len(path) + 3 + len(encode_query(prefix + suffix + "()")) - 2
    separator_uri = encoded_length(", ")
    current: list[str] = []
    covered: list[str] = []
    chars, uri = base_chars, base_uri
    for value in values:
        literal = soql_quote(value)
        literal_uri = encoded_length(literal)
        add_chars = len(literal) + (2 if current else 0)
        add_uri = literal_uri + (separator_uri if current else 0)
        if current and (chars + add_chars > SOQL_MAX_CHARS or uri + add_uri > URI_MAX_CHARS):
            groups.append((f"{prefix}({', '.join(current)}){suffix}", covered))
            current, covered, chars, uri = [], [], base_chars, base_uri
            add_chars = len(literal)
            add_uri = literal_uri
        current.append(literal)
        covered.append(value)
        chars += add_chars
        uri += add_uri
    if current:
        groups.append((f"{prefix}({', '.join(current)}){suffix}", covered))
    return groups
