"""The SOAP side of the fake EWS: namespaces, paths, element building, envelopes and faults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lxml import etree

NS_S = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS_E = "http://schemas.microsoft.com/exchange/services/2006/errors"
NS_AD_REQ = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
NS_AD = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
NS_AD_OUT = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
S, M, T, E = (f"{{{ns}}}" for ns in (NS_S, NS_M, NS_T, NS_E))

EWS_PATH = "/EWS/Exchange.asmx"
AUTODISCOVER_PATH = "/autodiscover/autodiscover.xml"
METADATA_PATH = "/autodiscover/metadata/json/1"
EXCHANGE_PRINCIPAL = "00000002-0000-0ff1-ce00-000000000000"
MAX_SYNC_CHANGES = 512
FOLDERS = ("inbox", "sentitems", "calendar")
FOLDER_INFO = {
    "root": ("Folder", "", "Top of Information Store"),
    "msgfolderroot": ("Folder", "IPF.Note", "Top of Information Store"),
    "inbox": ("Folder", "IPF.Note", "Inbox"),
    "sentitems": ("Folder", "IPF.Note", "Sent Items"),
    "calendar": ("CalendarFolder", "IPF.Appointment", "Calendar"),
}



Response = tuple[str, list[tuple[str, str]], bytes]


def iso(value: datetime) -> str:
    """A UTC timestamp as EWS writes it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_dt(text: str) -> datetime:
    """An EWS timestamp (naive ones are UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def el(tag: str, parent: Any = None, text: str | None = None, **attrs: str) -> Any:
    """A new element (a sub-element of ``parent`` when given)."""
    node = etree.Element(tag, attrs) if parent is None else etree.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = text
    return node


class SoapError(Exception):
    """An error answered as a response message code."""

    def __init__(self, code: str, text: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.text = text or code


def parse_xml(raw: bytes) -> Any:
    """Parse a request body (no entities, no network)."""
    return etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False, no_network=True))


def to_bytes(doc: Any) -> bytes:
    """Serialise a document with its XML declaration."""
    return bytes(etree.tostring(doc, xml_declaration=True, encoding="utf-8"))


def xml_response(status: str, payload: bytes) -> Response:
    """A response carrying XML."""
    return status, [("Content-Type", "text/xml; charset=utf-8")], payload


def envelope(version: tuple[int, int, int, int], content: Any) -> bytes:
    """A SOAP envelope whose header names the server ``version`` and whose body holds ``content``."""
    env = el(S + "Envelope", None)
    header = el(S + "Header", env)
    major, minor, build, rev = version
    el(T + "ServerVersionInfo", header, MajorVersion=str(major), MinorVersion=str(minor),
       MajorBuildNumber=str(build), MinorBuildNumber=str(rev), Version="V2017_07_11")
    body = el(S + "Body", env)
    body.append(content)
    return to_bytes(env)


def server_busy(retry_after: float) -> Response:
    """The ``ErrorServerBusy`` fault Exchange answers when it throttles (with ``BackOffMilliseconds``)."""
    env = el(S + "Envelope", None)
    body = el(S + "Body", env)
    fault = el(S + "Fault", body)
    el("faultcode", fault, "a:ErrorServerBusy")
    el("faultstring", fault, "The server cannot service this request right now. Try again later.")
    detail = el("detail", fault)
    el(E + "ResponseCode", detail, "ErrorServerBusy")
    el(E + "Message", detail, "The server cannot service this request right now. Try again later.")
    xml = el(T + "MessageXml", detail)
    el(T + "Value", xml, str(int(retry_after * 1000)), Name="BackOffMilliseconds")
    return xml_response("500 Internal Server Error", to_bytes(env))


def fault_element(code: str, text: str) -> Any:
    """A SOAP fault naming an EWS response code."""
    fault = el(S + "Fault", None)
    el("faultcode", fault, f"a:{code}")
    el("faultstring", fault, text)
    detail = el("detail", fault)
    el(E + "ResponseCode", detail, code)
    el(E + "Message", detail, text)
    return fault


def message(parent: Any, op: str, code: str = "NoError", text: str = "") -> Any:
    """One ``<op>ResponseMessage`` (Success for ``NoError``, else Error with its text)."""
    ok = code == "NoError"
    msg = el(M + f"{op}ResponseMessage", parent, ResponseClass="Success" if ok else "Error")
    if not ok:
        el(M + "MessageText", msg, text or code)
    el(M + "ResponseCode", msg, code)
    if not ok:
        el(M + "DescriptiveLinkKey", msg, "0")
    return msg
