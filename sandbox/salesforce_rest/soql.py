"""The SOQL subset of the fake Salesforce: a tokenizer, a parser into :class:`Query`, and record matching."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>!=|<=|>=|[(),=<>])|"
                    r"(?P<word>[A-Za-z_][A-Za-z0-9_.]*))")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}


class SoqlError(ValueError):
    """A statement the fake cannot parse (Salesforce would answer MALFORMED_QUERY)."""


def _tokens(soql: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    soql = soql.strip()
    while pos < len(soql):
        match = _TOKEN.match(soql, pos)
        if not match or match.end() == pos:
            raise SoqlError(f"unexpected text at {pos}")
        pos = match.end()
        if match.group("str") is not None:
            raw = match.group("str")[1:-1]
            if "\\" in raw:
                raw = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw)
            out.append(("str", raw))
        elif match.group("num") is not None:
            out.append(("num", float(match.group("num"))))
        elif match.group("op") is not None:
            out.append(("op", match.group("op")))
        else:
            out.append(("word", match.group("word")))
    return out


@dataclass
class Query:
    """A parsed statement."""

    sobject: str
    fields: list[str]
    children: list[Query]
    child_name: str
    conditions: list[tuple[str, str, Any]]
    order_by: str | None
    descending: bool
    limit: int | None


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.t = tokens
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self) -> tuple[str, Any]:
        if self.i >= len(self.t):
            raise SoqlError("unexpected end")
        tok = self.t[self.i]
        self.i += 1
        return tok

    def word(self, expected: str | None = None) -> str:
        kind, value = self.take()
        if kind != "word" or (expected and value.upper() != expected):
            raise SoqlError(f"expected {expected or 'a name'}, got {value!r}")
        return str(value)

    def op(self, expected: str) -> None:
        kind, value = self.take()
        if kind != "op" or value != expected:
            raise SoqlError(f"expected {expected!r}, got {value!r}")

    def literal(self) -> Any:
        kind, value = self.take()
        if kind in ("str", "num"):
            return value
        if kind == "word" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind == "word" and value.lower() == "null":
            return None
        raise SoqlError(f"expected a value, got {value!r}")

    def query(self, nested: bool = False) -> Query:
        self.word("SELECT")
        fields: list[str] = []
        children: list[Query] = []
        while True:
            tok = self.peek()
            if tok == ("op", "("):
                self.take()
                children.append(self.query(nested=True))
                self.op(")")
            else:
                fields.append(self.word())
            if self.peek() == ("op", ","):
                self.take()
                continue
            break
        self.word("FROM")
        sobject = self.word()
        conditions: list[tuple[str, str, Any]] = []
        order_by, descending, limit = None, False, None
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() == "WHERE":
            self.take()
            while True:
                name = self.word()
                kind, value = self.take()
                if kind == "word" and value.upper() == "IN":
                    self.op("(")
                    values = [self.literal()]
                    while self.peek() == ("op", ","):
                        self.take()
                        values.append(self.literal())
                    self.op(")")
                    conditions.append((name, "IN", InList(values)))
                elif kind == "op" and value in ("=", "!="):
                    conditions.append((name, value, self.literal()))
                else:
                    raise SoqlError(f"unsupported operator {value!r}")
                tok = self.peek()
                if tok and tok[0] == "word" and tok[1].upper() == "AND":
                    self.take()
                    continue
                break
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() == "ORDER":
            self.take()
            self.word("BY")
            order_by = self.word()
            tok = self.peek()
            if tok and tok[0] == "word" and tok[1].upper() in ("ASC", "DESC"):
                descending = self.take()[1].upper() == "DESC"
        tok = self.peek()
        if tok and tok[0] == "word" and tok[1].upper() == "LIMIT":
            self.take()
            limit = int(self.literal())
        if not nested and self.peek() is not None:
            raise SoqlError(f"unexpected {self.peek()!r}")
        child_name = sobject if nested else ""
        return Query(sobject, fields, children, child_name, conditions, order_by, descending, limit)


def parse_soql(soql: str) -> Query:
    """Parse the supported SOQL subset."""
    return _Parser(_tokens(soql)).query()


@lru_cache(maxsize=256)
def parsed(soql: str) -> Query:
    """:func:`parse_soql`, remembered for repeated text (the fake's query path): the result is shared, not to change."""
    return parse_soql(soql)


class InList(list[Any]):
    """The values of an ``IN`` list, with the text ones lower-cased in a set (a row is one lookup, not a scan)."""

    def __init__(self, values: list[Any]) -> None:
        super().__init__(values)
        self.texts = {v.lower() for v in values if isinstance(v, str)}
        self.others = [v for v in values if not isinstance(v, str)]

    def holds(self, current: Any) -> bool:
        """Whether ``current`` equals one of the values (text without regard to case, as SOQL)."""
        if isinstance(current, str) and current.lower() in self.texts:
            return True
        return any(_equal(current, v) for v in (self.others if isinstance(current, str) else self))


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if isinstance(b, bool) or isinstance(a, bool):
        return bool(a) == bool(b)
    return bool(a == b)


def matches(record: dict[str, Any], conditions: list[tuple[str, str, Any]]) -> bool:
    for name, op, value in conditions:
        current = record.get(name)
        if op == "IN":
            if not (value.holds(current) if isinstance(value, InList) else any(_equal(current, v) for v in value)):
                return False
        elif op == "=":
            if not _equal(current, value):
                return False
        elif op == "!=" and _equal(current, value):
            return False
    return True


def matching(table: Iterable[dict[str, Any]], conditions: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    """The records of ``table`` that :func:`matches`, in order: one pass a condition, text ``IN`` as set lookups."""
    rows = table
    for name, op, value in conditions:
        if op == "IN" and isinstance(value, InList):
            texts, holds = value.texts, value.holds
            if value.others:
                rows = [r for r in rows if holds(r.get(name))]
            else:  # only text values: a text field is one set lookup (anything else as holds() says)
                rows = [r for r in rows if ((c := r.get(name)).__class__ is str and c.lower() in texts)
                        or (c.__class__ is not str and holds(c))]
        elif op == "=" and isinstance(value, str):
            text = value.lower()
            rows = [r for r in rows if ((c := r.get(name)).__class__ is str and c.lower() == text)
                    or (c.__class__ is not str and _equal(c, value))]
        else:
            rows = [r for r in rows if matches(r, [(name, op, value)])]
    return list(rows)
