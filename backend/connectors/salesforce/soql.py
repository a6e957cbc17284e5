"""SOQL text: string literals, and ``IN`` lists cut to the statement and URI limits.

Lookups go as GET subrequests of a Composite request, so a statement must fit the URI limit once
URL-encoded, not just SOQL's own statement limit.
"""

from __future__ import annotations

from urllib.parse import urlencode

# Limits of the platform (REST API developer guide).
SOQL_MAX_CHARS = 100_000
# A GET URI is limited to about 16 KB; keep a margin for the host and headers.
URI_MAX_CHARS = 15_500


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
    statements: list[str] = []
    base_chars = len(prefix) + len(suffix) + 2
    base_uri = len(path) + 3 + len(urlencode({"q": prefix + suffix + "()"})) - 2
    current: list[str] = []
    chars, uri = base_chars, base_uri
    for value in values:
        literal = soql_quote(value)
        add_chars = len(literal) + (2 if current else 0)
        add_uri = len(urlencode({"q": literal})) - 2 + (len(urlencode({"q": ", "})) - 2 if current else 0)
        if current and (chars + add_chars > SOQL_MAX_CHARS or uri + add_uri > URI_MAX_CHARS):
            statements.append(f"{prefix}({', '.join(current)}){suffix}")
            current, chars, uri = [], base_chars, base_uri
            add_chars = len(literal)
            add_uri = len(urlencode({"q": literal})) - 2
        current.append(literal)
        chars += add_chars
        uri += add_uri
    if current:
        statements.append(f"{prefix}({', '.join(current)}){suffix}")
    return statements
