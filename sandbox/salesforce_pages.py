"""Read-only pages of the fake Salesforce: what sync logged, for a person trying the sandbox.

``GET /sandbox/logged`` lists the emails, tasks and events in the fake org with their relations;
``GET /lightning/r/{Object}/{Id}/view`` (the Lightning record URL the pane links to) shows one
record and what it relates to. Plain HTML, every value escaped, no script; nothing here writes.
"""

from __future__ import annotations

import html
from typing import Any

from flask import Flask, Response

from sandbox.salesforce_rest import data_of

_OBJECTS = ("EmailMessage", "Task", "Event")
_FIELDS = {
    "EmailMessage": ("Subject", "FromAddress", "ToAddress", "MessageDate", "MessageIdentifier"),
    "Task": ("Subject", "ActivityDate", "TaskSubtype", "WhoId"),
    "Event": ("Subject", "StartDateTime", "EndDateTime", "Location", "WhoId"),
    "Contact": ("FirstName", "LastName", "Email"),
    "Lead": ("FirstName", "LastName", "Email", "Company"),
}
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;margin:16px;max-width:60rem}}td,th{{text-align:left;padding:4px 8px;
vertical-align:top;border-bottom:1px solid #ddd}}a{{color:#005a9e}}</style></head><body>
<p>Sandbox Salesforce &middot; read-only &middot; <a href="/sandbox/logged">everything logged</a></p>
<h1>{title}</h1>{body}</body></html>"""


def _e(value: Any) -> str:
    return html.escape(str(value if value is not None else ""))


def _link(obj: str, rid: str, text: str) -> str:
    return f'<a href="/lightning/r/{_e(obj)}/{_e(rid)}/view">{_e(text)}</a>'


def _object_of(data: Any, rid: str) -> str:
    for obj, records in data.records.items():
        if rid in records:
            return str(obj)
    return ""


def _name(record: dict[str, Any]) -> str:
    return " ".join(str(record.get(f) or "") for f in ("FirstName", "LastName")).strip() or str(record.get("Id"))


def _related(data: Any, obj: str, rid: str) -> list[tuple[str, str, str]]:
    """(object, id, role) of the people a record relates to."""
    rows: list[tuple[str, str, str]] = []
    if obj == "EmailMessage":
        for rel in data.all("EmailMessageRelation"):
            if rel.get("EmailMessageId") == rid and rel.get("RelationId"):
                rows.append((_object_of(data, rel["RelationId"]), rel["RelationId"], str(rel.get("RelationType"))))
    if obj == "Event":
        for rel in data.all("EventRelation"):
            if rel.get("EventId") == rid and rel.get("RelationId"):
                rows.append((_object_of(data, rel["RelationId"]), rel["RelationId"], "Attendee"))
    record = data.records.get(obj, {}).get(rid) or {}
    who = record.get("WhoId")
    if who and all(r[1] != who for r in rows):
        rows.append((_object_of(data, who), who, "Name"))
    return rows


def _people(data: Any, rows: list[tuple[str, str, str]]) -> str:
    parts = []
    for obj, rid, role in rows:
        record = data.records.get(obj, {}).get(rid) or {"Id": rid}
        label = _name(record) if obj in ("Contact", "Lead") else rid
        parts.append(f"{_link(obj or 'Contact', rid, label)} ({_e(obj or '?')}, {_e(role)})")
    return "<br>".join(parts) or "&mdash;"


def register(app: Flask, state: Any) -> None:
    """Add the read-only pages to the fake's app."""

    def page(title: str, body: str, status: int = 200) -> Response:
        return Response(_PAGE.format(title=_e(title), body=body), status=status, mimetype="text/html")

    @app.get("/sandbox/logged")
    def logged() -> Response:
        data = data_of(state)
        sections = []
        for obj in _OBJECTS:
            rows = []
            for record in data.all(obj):
                rid = str(record.get("Id"))
                rows.append(f"<tr><td>{_link(obj, rid, rid)}</td><td>{_e(record.get('Subject'))}</td>"
                            f"<td>{_people(data, _related(data, obj, rid))}</td></tr>")
            table = ("<table><tr><th>Record</th><th>Subject</th><th>Related to</th></tr>" + "".join(rows)
                     + "</table>") if rows else "<p>None yet.</p>"
            sections.append(f"<h2>{_e(obj)} ({len(rows)})</h2>{table}")
        return page("Logged by Sidebar Sync", "".join(sections))

    @app.get("/lightning/r/<obj>/<rid>/view")
    def record_view(obj: str, rid: str) -> Response:
        data = data_of(state)
        record = data.records.get(obj, {}).get(rid)
        if record is None:
            return page("Not found", "<p>No such record in the sandbox org.</p>", 404)
        fields = "".join(f"<tr><th>{_e(f)}</th><td>{_e(record.get(f))}</td></tr>" for f in _FIELDS.get(obj, ()))
        body = f"<table><tr><th>Id</th><td>{_e(rid)}</td></tr>{fields}</table>"
        if obj in _OBJECTS:
            body += f"<h2>Related to</h2><p>{_people(data, _related(data, obj, rid))}</p>"
        return page(f"{obj} {rid}", body)
