"""The Salesforce CRM connector (simple-salesforce): the only module that knows Salesforce's REST API.

Every call counts against the org's daily API allowance, so the connector batches hard:

* Lookups (Contacts and Leads by address, existing EmailMessages by Message-ID, existing Events by
  our key field) are SOQL ``IN`` lists chunked to the statement (100,000 characters) and URI
  (16 KB) limits, sent as subrequests of one Composite request (at most 5 queries each, one API
  call), and cached for the run so an address or key is looked up once.
* Writes are sObject Collections of up to 200 records with ``allOrNone = false``, sent as
  subrequests of Composite requests (at most 5 collections, so up to 1,000 records per API call).
  Relation rows (EmailMessageRelation for the sender, EventRelation for more attendees) reference
  the records created by an earlier subrequest of the same request (``@{ref[i].id}``), so one new
  email with its relations is one write call. A record and its relations always travel in the
  same request (400 emails with their sender relations per call): were they split, a failure of
  the second request would leave records whose relations no rerun writes.
* The Message-ID lookup also returns whether each existing email has its sender relation, so a
  rerun repairs an email an earlier, broken run left without one, at no extra call.
* A record Salesforce refuses (validation rule, field too long, deleted contact) comes back as a
  :class:`~backend.connectors.crm.Rejected` with Salesforce's reason; the rest commit.

Vendor errors become domain errors here: an expired session is refreshed once and the call retried
(:class:`SalesforceCredentials.call`), a refused refresh token is ``AuthRevoked``,
``REQUEST_LIMIT_EXCEEDED`` is :class:`ApiLimitExceeded`, network trouble and 5xx are
``Unavailable``. Error messages carry Salesforce's error codes, never record content.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceRefusedRequest,
)

from backend.config import Settings
from backend.connectors.crm import (
    ApiLimitExceeded,
    ApiUsage,
    Capabilities,
    CrmRequestFailed,
    EmailDraft,
    EventDraft,
    ExistingEvent,
    Lookup,
    Person,
    PersonKind,
    Rejected,
    WritePlan,
    WriteResult,
    clip,
    join_addresses,
)
from backend.connectors.errors import Throttled, Unavailable
from backend.connectors.salesforce.credentials import SalesforceCredentials
from backend.connectors.salesforce.oauth import TokenExpired
from backend.net.outbound import make_session

log = logging.getLogger(__name__)
T = TypeVar("T")

# Limits of the platform (REST API developer guide).
COLLECTION_MAX = 200
COMPOSITE_MAX_HEAVY = 5  # queries and collections per Composite request
SOQL_MAX_CHARS = 100_000
# A GET URI is limited to about 16 KB; keep a margin for the host and headers.
URI_MAX_CHARS = 15_500
# Lengths of the fields we write (object reference; EmailMessage.TextBody holds 128 KB).
FIELD_LIMITS: dict[str, dict[str, int]] = {
    "EmailMessage": {"Subject": 3000, "TextBody": 131_072, "FromAddress": 1000, "FromName": 1000,
                     "ToAddress": 4000, "CcAddress": 4000, "RelationAddress": 255},
    "Task": {"Subject": 255, "Description": 32_000},
    "Event": {"Subject": 255, "Description": 32_000, "Location": 255},
}
KEY_FIELD_MAX = 255
# Existing emails by Message-ID, with their sender relation (child rows count toward a query page).
EMAIL_LOOKUP_PREFIX = ("SELECT Id, MessageIdentifier, (SELECT Id FROM EmailMessageRelations WHERE RelationType = "
                       "'FromAddress') FROM EmailMessage WHERE MessageIdentifier IN ")
CANCELLED_PREFIX = "Canceled: "
# Writes of 1,000 records can take a while on a busy org; reads use the default timeout.
WRITE_TIMEOUT_SECONDS = 180.0
# Per-record error codes that mean "already there" (our key field is a unique external id).
_DUPLICATE_CODES = {"DUPLICATE_VALUE", "DUPLICATE_EXTERNAL_ID"}
_GONE_CODES = {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"}
# Codes that say "not now" rather than "never": a record refused with one is retried, not quarantined
# (a colleague's run writing relations to the same Contact locks it for a moment, for example).
_TRANSIENT_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "UNKNOWN_EXCEPTION", "REQUEST_RUNNING_TOO_LONG",
                    "QUERY_TIMEOUT"}


class CapabilityCache(Protocol):
    """Where org capabilities are cached between runs (Redis, in production)."""

    def get(self, org_id: str) -> dict[str, object] | None:
        """The cached capabilities of an org, or None."""
        ...

    def put(self, org_id: str, value: dict[str, object]) -> None:
        """Cache an org's capabilities."""
        ...


def soql_quote(value: str) -> str:
    """A SOQL string literal (quotes, backslashes and control characters escaped)."""
    escaped = (
        value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"')
        .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t").replace("\b", "\\b").replace("\f", "\\f")
    )
    return f"'{escaped}'"


def activity_key(key: str) -> str:
    """The value stored in the activity key field (a hash when the key is longer than the field)."""
    if len(key) <= KEY_FIELD_MAX:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


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


def address_variants(address: str) -> set[str]:
    """The forms an address may be stored in: as given, and with its domain in ASCII (IDNA) and Unicode."""
    address = address.strip().lower()
    local, _, domain = address.rpartition("@")
    variants = {address}
    if not local or not domain:
        return variants
    try:
        variants.add(f"{local}@{domain.encode('idna').decode('ascii')}")
    except UnicodeError:
        pass
    try:
        variants.add(f"{local}@{domain.encode('ascii').decode('idna')}")
    except UnicodeError:
        pass
    return variants


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _parse_dt(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def safe_reason(error: dict[str, Any]) -> str:
    """Salesforce's reason for refusing a record, without any field value it may echo."""
    code = str(error.get("statusCode") or error.get("errorCode") or "ERROR")[:60]
    fields = ", ".join(str(f) for f in (error.get("fields") or [])[:5])
    message = str(error.get("message") or "")
    if code == "STRING_TOO_LONG" or "data value too large" in message:
        # Salesforce quotes the value that did not fit; that value is mail content.
        message = "a value is too long for its field"
    text = f"{code}: {message}" if message else code
    if fields:
        text += f" ({fields})"
    return clip(text, 300)


def _error_code(exc: SalesforceError) -> tuple[str, str]:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", "")), str(content[0].get("message", ""))[:200]
    if isinstance(content, dict):
        return str(content.get("errorCode", content.get("error", ""))), str(content.get("message", ""))[:200]
    return "", ""


@dataclass(eq=False)
class _Unit:
    """One record to create, and the relation rows that hang off it once it has an id."""

    key: str
    object: str
    record: dict[str, Any]
    kind: str  # "email" or "event"
    relations: list[dict[str, Any]] = field(default_factory=list)
    relation_parent_field: str = ""
    id: str = ""
    failed: bool = False
    # The create subrequest that carries the record (relations in the same request reference it).
    create: _Sub | None = None
    # A holder of an existing record whose missing sender relation is being added.
    repair: bool = False


@dataclass(eq=False)
class _Sub:
    """One collection subrequest of a Composite request."""

    method: str
    records: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    # What each record is: for creates the unit, for relations (unit, template), for updates (key, label).
    units: list[_Unit] = field(default_factory=list)
    relations: list[tuple[_Unit, dict[str, Any]]] = field(default_factory=list)
    meta: list[tuple[str, str]] = field(default_factory=list)
    role: str = ""  # create | relation | update | delete
    ref: str = ""
    positions: dict[int, int] | None = None
    # True when a relation row points at a record created earlier in the same request (@{ref}).
    referenced: bool = False
    # True for relation rows sent again after a transient refusal (they are not sent a third time).
    retried: bool = False

    def record_count(self) -> int:
        """How many records the subrequest carries (a method, not __len__: a _Sub is never falsy)."""
        if self.role == "create":
            return len(self.units)
        if self.role == "relation":
            return len(self.relations)
        return len(self.meta)

    def refused(self, index: int, reason: str) -> Rejected:
        """The record at ``index`` as refused by Salesforce, with ``reason`` (a create is marked failed)."""
        if self.role == "create":
            unit = self.units[index]
            unit.failed = True
            return Rejected(unit.key, unit.object, reason)
        if self.role == "relation":
            unit, template = self.relations[index]
            return Rejected(unit.key, str(template["attributes"]["type"]), reason)
        return Rejected(self.meta[index][0], "Event", reason)

    def position(self, unit: _Unit) -> int:
        """Where ``unit`` sits in this create subrequest (by identity)."""
        if self.positions is None:
            self.positions = {id(u): i for i, u in enumerate(self.units)}
        return self.positions[id(unit)]


def _subrequests_for(records: int, relations: int) -> int:
    """Collections needed for ``records`` creates and ``relations`` relation rows (200 each)."""
    return -(-records // COLLECTION_MAX) + -(-relations // COLLECTION_MAX)


def pack_creates(units: list[_Unit]) -> tuple[list[list[_Sub]], list[_Sub]]:
    """Composite requests for ``units``: every record travels with its relation rows.

    A record and its relations are never split across two requests: if the second request failed,
    the rerun would find the record and never write its relations. So a request takes as many whole
    records (with their relations) as five collections of 200 hold: 400 emails with their sender
    relation, or 1,000 records without relations. Only a record with more than 800 relations (a
    meeting with that many matched attendees) cannot travel whole; its extra relations follow in
    later requests (returned second), and a rerun adds what is missing to an existing meeting.
    """
    groups: list[list[_Sub]] = []
    overflow: list[_Sub] = []
    i = 0
    while i < len(units):
        records = relations = 0
        j = i
        while j < len(units):
            more = len(units[j].relations)
            if _subrequests_for(records + 1, relations + more) > COMPOSITE_MAX_HEAVY:
                break
            records, relations, j = records + 1, relations + more, j + 1
        if j == i:
            unit = units[i]
            room = (COMPOSITE_MAX_HEAVY - 1) * COLLECTION_MAX
            rest, unit.relations = unit.relations[room:], unit.relations[:room]
            for start in range(0, len(rest), COLLECTION_MAX):
                overflow.append(_Sub("POST", relations=[(unit, t) for t in rest[start:start + COLLECTION_MAX]],
                                     role="relation"))
            j = i + 1
        chunk = units[i:j]
        group: list[_Sub] = []
        for start in range(0, len(chunk), COLLECTION_MAX):
            part = chunk[start:start + COLLECTION_MAX]
            create = _Sub("POST", records=[u.record for u in part], units=part, role="create")
            for unit in part:
                unit.create = create
            group.append(create)
        pairs = [(u, r) for u in chunk for r in u.relations]
        for start in range(0, len(pairs), COLLECTION_MAX):
            group.append(_Sub("POST", relations=pairs[start:start + COLLECTION_MAX], role="relation"))
        groups.append(group)
        i = j
    return groups, overflow


class SalesforceCrm:
    """The :class:`~backend.connectors.crm.Crm` protocol over Salesforce's REST API, for one run."""

    def __init__(
        self,
        settings: Settings,
        credentials: SalesforceCredentials,
        org_id: str,
        owner_id: str,
        caps_cache: CapabilityCache | None = None,
        on_usage: Callable[[ApiUsage], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials
        self.org_id = org_id
        self.owner_id = owner_id
        self.caps_cache = caps_cache
        self.on_usage = on_usage
        self.session = session or make_session(settings.OUTBOUND_CA_BUNDLE, settings.OUTBOUND_TIMEOUT_SECONDS)
        self.key_field = settings.SF_ACTIVITY_KEY_FIELD
        self._calls = 0
        self._usage: ApiUsage | None = None
        self._caps: Capabilities | None = None
        self._client_cache: tuple[str, str, Salesforce] | None = None
        # Per-run caches: an address or key is asked about once per run.
        self._people: dict[str, Person | None] = {}
        self._emails: dict[str, bool] = {}
        # Existing EmailMessages: key -> (record id, has a FromAddress relation).
        self._email_records: dict[str, tuple[str, bool]] = {}
        self._events: dict[str, ExistingEvent | None] = {}

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def calls(self) -> int:
        """REST API calls made by this instance (token refreshes are not API calls)."""
        return self._calls

    @property
    def last_usage(self) -> ApiUsage | None:
        """The org's usage from the last response's ``Sforce-Limit-Info`` header."""
        return self._usage

    @property
    def _path(self) -> str:
        return f"/services/data/v{self.settings.SALESFORCE_API_VERSION}"

    def _client(self, instance_url: str, token: str) -> Salesforce:
        cached = self._client_cache
        if cached and cached[0] == instance_url and cached[1] == token:
            return cached[2]
        sf = Salesforce(instance_url=instance_url, session_id=token, version=self.settings.SALESFORCE_API_VERSION,
                        session=self.session)
        self._client_cache = (instance_url, token, sf)
        return sf

    def _call(self, op: Callable[[Salesforce], T]) -> T:
        """Run one REST call with refresh-once on an expired session, translating vendor errors."""

        def attempt(instance_url: str, token: str) -> T:
            sf = self._client(instance_url, token)
            self._calls += 1
            try:
                return op(sf)
            except SalesforceExpiredSession:
                raise TokenExpired() from None
            except SalesforceRefusedRequest as exc:
                code, _ = _error_code(exc)
                if code == "REQUEST_LIMIT_EXCEEDED":
                    raise ApiLimitExceeded() from None
                raise CrmRequestFailed(f"Salesforce refused the request ({code or exc.status}).") from None
            except SalesforceGeneralError as exc:
                code, _ = _error_code(exc)
                if exc.status in (420, 429):
                    raise Throttled(f"Salesforce asked us to slow down ({code or exc.status}).", 60.0) from None
                if exc.status >= 500:
                    raise Unavailable(f"Salesforce answered {exc.status} ({code or 'server error'}).") from None
                raise CrmRequestFailed(f"Salesforce answered {exc.status} ({code}).") from None
            except SalesforceError as exc:
                code, _ = _error_code(exc)
                raise CrmRequestFailed(f"Salesforce refused the request ({code or exc.status}).") from None
            except requests.Timeout:
                raise Unavailable("Salesforce did not answer in time.") from None
            except requests.RequestException as exc:
                raise Unavailable(f"Salesforce could not be reached ({type(exc).__name__}).") from None
            except ValueError:
                raise Unavailable("Salesforce answered something that is not JSON.") from None
            finally:
                usage = sf.api_usage.get("api-usage")
                if usage is not None:
                    fresh = ApiUsage(int(usage.used), int(usage.total))
                    if fresh != self._usage:
                        self._usage = fresh
                        if self.on_usage is not None:
                            self.on_usage(fresh)

        return self.credentials.call(attempt)

    def _composite(self, subrequests: list[dict[str, Any]], timeout: float | None = None) -> list[dict[str, Any]]:
        body = {"allOrNone": False, "collateSubrequests": False, "compositeRequest": subrequests}
        kwargs: dict[str, Any] = {"json": body}
        if timeout:
            kwargs["timeout"] = (10.0, timeout)
        result = self._call(lambda sf: sf.restful("composite", method="POST", **kwargs))
        responses = (result or {}).get("compositeResponse")
        if not isinstance(responses, list):
            raise Unavailable("Salesforce answered a composite request with something unexpected.")
        return responses

    def close(self) -> None:
        """Release connections."""
        self.session.close()

    # -- capabilities and usage -------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        """Enhanced Email on or off, and whether our key field exists (one call per org per day)."""
        if self._caps is not None:
            return self._caps
        cached = self.caps_cache.get(self.org_id) if self.caps_cache else None
        if cached:
            self._caps = Capabilities.from_dict(cached)
            return self._caps
        responses = self._composite([
            {"method": "GET", "url": f"{self._path}/sobjects", "referenceId": "global"},
            {"method": "GET", "url": f"{self._path}/sobjects/Event/describe", "referenceId": "event"},
        ])
        by_ref = {r.get("referenceId"): r for r in responses}
        sobjects = (by_ref.get("global", {}).get("body") or {}).get("sobjects") or []
        enhanced = any(
            o.get("name") == "EmailMessageRelation" and o.get("createable") for o in sobjects if isinstance(o, dict)
        )
        event_fields = (by_ref.get("event", {}).get("body") or {}).get("fields") or []
        names = {str(f.get("name", "")).lower(): str(f.get("name")) for f in event_fields if isinstance(f, dict)}
        key_field = names.get(self.key_field.lower(), "")
        self._caps = Capabilities(enhanced_email=enhanced, activity_key_field=key_field)
        if self.caps_cache:
            self.caps_cache.put(self.org_id, self._caps.as_dict())
        log.info("salesforce capabilities org=%s enhanced_email=%s key_field=%s", self.org_id, enhanced,
                 bool(key_field))
        return self._caps

    def api_usage(self) -> ApiUsage | None:
        """The org's daily API usage from the Limits resource (one call)."""
        data = self._call(lambda sf: sf.limits())
        daily = (data or {}).get("DailyApiRequests") or {}
        try:
            limit = int(daily["Max"])
            used = limit - int(daily["Remaining"])
        except (KeyError, TypeError, ValueError):
            return self._usage
        self._usage = ApiUsage(used, limit)
        if self.on_usage is not None:
            self.on_usage(self._usage)
        return self._usage

    # -- lookups ----------------------------------------------------------------------------------
    def match(self, addresses: Iterable[str]) -> dict[str, Person]:
        """Contacts and Leads by address (see :meth:`lookup`)."""
        return self.lookup(addresses, (), ()).people

    def existing_emails(self, keys: Iterable[str]) -> set[str]:
        """Message-IDs the org already holds (see :meth:`lookup`)."""
        return self.lookup((), keys, ()).existing_emails

    def existing_events(self, keys: Iterable[str]) -> dict[str, ExistingEvent]:
        """Events the org already holds (see :meth:`lookup`)."""
        return self.lookup((), (), keys).existing_events

    def lookup(self, addresses: Iterable[str], email_keys: Iterable[str], event_keys: Iterable[str]) -> Lookup:
        """People by address and existing keys, asking Salesforce only about what this run has not seen."""
        wanted_addresses = sorted({a.strip().lower() for a in addresses if a and "@" in a})
        wanted_emails = sorted({k for k in email_keys if k})
        wanted_events = sorted({k for k in event_keys if k})
        new_addresses = [a for a in wanted_addresses if a not in self._people]
        new_emails = [k for k in wanted_emails if k not in self._emails]
        new_events = [k for k in wanted_events if k not in self._events]
        if new_addresses or new_emails or new_events:
            self._fetch(new_addresses, new_emails, new_events)
        result = Lookup()
        for address in wanted_addresses:
            person = self._people.get(address)
            if person is not None:
                result.people[address] = person
        result.existing_emails = {k for k in wanted_emails if self._emails.get(k)}
        for key in result.existing_emails:
            found = self._email_records.get(key)
            if found is not None:
                result.email_ids[key] = found[0]
                if not found[1]:
                    result.emails_without_sender.add(key)
        for key in wanted_events:
            event = self._events.get(key)
            if event is not None:
                result.existing_events[key] = event
        return result

    def forget(self, email_keys: Iterable[str] = (), event_keys: Iterable[str] = ()) -> None:
        """Drop cached answers about these keys (another run may have written them meanwhile)."""
        for key in email_keys:
            self._emails.pop(key, None)
            self._email_records.pop(key, None)
        for key in event_keys:
            self._events.pop(key, None)

    def _fetch(self, addresses: list[str], email_keys: list[str], event_keys: list[str]) -> None:
        caps = self.capabilities() if (email_keys or event_keys) else self._caps
        query_path = f"{self._path}/query"
        queries: list[tuple[str, str]] = []
        variant_of: dict[str, str] = {}
        for address in addresses:
            for variant in address_variants(address):
                variant_of.setdefault(variant, address)
        variants = sorted(variant_of)
        for soql in chunk_in_list("SELECT Id, Email FROM Contact WHERE Email IN ", variants, " ORDER BY Id",
                                  path=query_path):
            queries.append(("Contact", soql))
        for soql in chunk_in_list("SELECT Id, Email FROM Lead WHERE IsConverted = false AND Email IN ", variants,
                                  " ORDER BY Id", path=query_path):
            queries.append(("Lead", soql))
        key_field = caps.activity_key_field if caps else ""
        email_key_of: dict[str, str] = {}
        if email_keys and caps is not None:
            if caps.enhanced_email:
                # The sender relation comes along (a subquery, no extra call): an email a broken run
                # left without it is repaired by the next run that would have written the email.
                for soql in chunk_in_list(EMAIL_LOOKUP_PREFIX, email_keys, path=query_path):
                    queries.append(("EmailMessage", soql))
            elif key_field:
                email_key_of = {activity_key(k): k for k in email_keys}
                # key_field is an API name checked by Settings.check(); values are quoted by soql_quote.
                for soql in chunk_in_list(f"SELECT Id, {key_field} FROM Task WHERE {key_field} IN ",  # noqa: S608
                                          sorted(email_key_of), path=query_path):
                    queries.append(("Task", soql))
        event_key_of: dict[str, str] = {}
        if event_keys and key_field:
            event_key_of = {activity_key(k): k for k in event_keys}
            # key_field is an API name checked by Settings.check(); values are quoted by soql_quote.
            columns = f"Id, {key_field}, Subject, StartDateTime, EndDateTime, IsAllDayEvent, Location, Description"
            select = "SELECT " + columns + ", WhoId, (SELECT RelationId FROM EventRelations) FROM Event WHERE "  # noqa: S608
            select += f"{key_field} IN "
            for soql in chunk_in_list(select, sorted(event_key_of), path=query_path):
                queries.append(("Event", soql))

        rows: dict[str, list[dict[str, Any]]] = {"Contact": [], "Lead": [], "EmailMessage": [], "Task": [], "Event": []}
        for start in range(0, len(queries), COMPOSITE_MAX_HEAVY):
            group = queries[start:start + COMPOSITE_MAX_HEAVY]
            subrequests = [
                {"method": "GET", "url": f"{query_path}?{urlencode({'q': soql})}", "referenceId": f"q{i}"}
                for i, (_, soql) in enumerate(group)
            ]
            responses = self._composite(subrequests)
            by_ref = {r.get("referenceId"): r for r in responses}
            for i, (kind, _) in enumerate(group):
                response = by_ref.get(f"q{i}") or {}
                status = int(response.get("httpStatusCode") or 0)
                body = response.get("body")
                if status >= 300 or not isinstance(body, dict):
                    code = body[0].get("errorCode", "") if isinstance(body, list) and body else ""
                    if code == "REQUEST_LIMIT_EXCEEDED":
                        raise ApiLimitExceeded()
                    raise CrmRequestFailed(f"A Salesforce lookup failed ({code or status}).")
                rows[kind].extend(self._all_records(body))

        # People: a Contact wins over a Lead for the same address; the oldest record (lowest Id) first.
        best: dict[str, Person] = {}
        for kind, person_kind in (("Contact", PersonKind.CONTACT), ("Lead", PersonKind.LEAD)):
            for row in sorted(rows[kind], key=lambda r: str(r.get("Id", ""))):
                original = variant_of.get(str(row.get("Email") or "").strip().lower())
                if original is not None and original not in best:
                    best[original] = Person(str(row["Id"]), person_kind, original)
        for address in addresses:
            self._people[address] = best.get(address)
        # SOQL compares text without regard to case: map what comes back to our keys the same way.
        asked = {k.lower(): k for k in email_keys}
        for key in email_keys:
            self._emails.setdefault(key, False)
        for row in sorted(rows["EmailMessage"], key=lambda r: str(r.get("Id", ""))):
            original_key = asked.get(str(row.get("MessageIdentifier") or "").lower())
            if original_key:
                self._emails[original_key] = True
                has_sender = bool(self._sub_records(row.get("EmailMessageRelations")))
                known = self._email_records.get(original_key)
                # Older duplicates (from before claims existed) count as one: any of them with a
                # sender relation is enough, else the oldest gets it.
                if known is None or (has_sender and not known[1]):
                    self._email_records[original_key] = (str(row["Id"]), has_sender)
        stored_email = {k.lower(): v for k, v in email_key_of.items()}
        for row in rows["Task"]:
            original_key = stored_email.get(str(row.get(key_field) or "").lower())
            if original_key:
                self._emails[original_key] = True
        for key in event_keys:
            self._events.setdefault(key, None)
        stored_event = {k.lower(): v for k, v in event_key_of.items()}
        for row in rows["Event"]:
            original_key = stored_event.get(str(row.get(key_field) or "").lower())
            if not original_key:
                continue
            related = {str(r.get("RelationId")) for r in self._sub_records(row.get("EventRelations"))}
            if row.get("WhoId"):
                related.add(str(row["WhoId"]))
            self._events[original_key] = ExistingEvent(
                id=str(row["Id"]),
                key=original_key,
                subject=str(row.get("Subject") or ""),
                start=_parse_dt(row.get("StartDateTime")),
                end=_parse_dt(row.get("EndDateTime")),
                is_all_day=bool(row.get("IsAllDayEvent")),
                location=str(row.get("Location") or ""),
                description=str(row.get("Description") or ""),
                related_ids=frozenset(related),
            )

    @staticmethod
    def _sub_records(value: Any) -> list[dict[str, Any]]:
        if isinstance(value, dict):
            return [r for r in value.get("records") or [] if isinstance(r, dict)]
        return []

    def _all_records(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The records of a query result, following ``nextRecordsUrl`` for results over one page."""
        records = [r for r in body.get("records") or [] if isinstance(r, dict)]
        while not body.get("done", True) and body.get("nextRecordsUrl"):
            next_url = str(body["nextRecordsUrl"])
            body = self._call(lambda sf, url=next_url: sf.query_more(url, identifier_is_url=True))  # type: ignore[misc]
            records.extend(r for r in body.get("records") or [] if isinstance(r, dict))
        return records

    # -- mapping to records -----------------------------------------------------------------------
    def _email_unit(self, draft: EmailDraft, caps: Capabilities) -> _Unit | None:
        if caps.enhanced_email:
            limits = FIELD_LIMITS["EmailMessage"]
            record: dict[str, Any] = {
                "attributes": {"type": "EmailMessage"},
                "Subject": clip(draft.subject, limits["Subject"]),
                "TextBody": clip(draft.body, limits["TextBody"]),
                "FromAddress": clip(draft.from_address, limits["FromAddress"]),
                "FromName": clip(draft.from_name, limits["FromName"]),
                "ToAddress": join_addresses(draft.to_addresses, limits["ToAddress"]) or None,
                "CcAddress": join_addresses(draft.cc_addresses, limits["CcAddress"]) or None,
                "MessageDate": _iso(draft.message_date) if draft.message_date else None,
                # 3 = Sent, 1 = Read: logged mail is never "New" (unread) in Salesforce.
                "Status": "3" if draft.outgoing else "1",
                "Incoming": not draft.outgoing,
                "MessageIdentifier": draft.key,
            }
            for name, ids in (("ToIds", draft.to_ids), ("CcIds", draft.cc_ids), ("BccIds", draft.bcc_ids)):
                if ids:
                    record[name] = list(dict.fromkeys(ids))
            unit = _Unit(draft.key, "EmailMessage", record, "email", relation_parent_field="EmailMessageId")
            if draft.from_id:
                unit.relations.append(_sender_relation(draft))
            return unit
        if not caps.activity_key_field:
            return None
        limits = FIELD_LIMITS["Task"]
        header = [f"From: {draft.from_address}"]
        if draft.to_addresses:
            header.append("To: " + join_addresses(draft.to_addresses, 2000))
        if draft.cc_addresses:
            header.append("Cc: " + join_addresses(draft.cc_addresses, 2000))
        when = draft.message_date or datetime.now(tz=UTC)
        record = {
            "attributes": {"type": "Task"},
            "TaskSubtype": "Email",
            "Subject": clip(f"Email: {draft.subject}", limits["Subject"]),
            "Description": clip("\n".join(header) + "\n\n" + draft.body, limits["Description"]),
            "ActivityDate": when.astimezone(UTC).date().isoformat(),
            "Status": "Completed",
            "Priority": "Normal",
            caps.activity_key_field: activity_key(draft.key),
        }
        if draft.people_ids:
            record["WhoId"] = draft.people_ids[0]
        return _Unit(draft.key, "Task", record, "email")

    def _event_fields(self, draft: EventDraft) -> dict[str, Any]:
        limits = FIELD_LIMITS["Event"]
        fields: dict[str, Any] = {
            "Subject": clip(draft.subject, limits["Subject"]),
            "Location": clip(draft.location, limits["Location"]) or None,
            "Description": clip(draft.body, limits["Description"]) or None,
            "IsAllDayEvent": draft.is_all_day,
        }
        if draft.is_all_day:
            first: date = draft.start.date()
            last = max(first, (draft.end - timedelta(seconds=1)).date())
            fields["StartDateTime"] = _iso(datetime(first.year, first.month, first.day, tzinfo=UTC))
            fields["EndDateTime"] = _iso(datetime(last.year, last.month, last.day, tzinfo=UTC))
        else:
            fields["StartDateTime"] = _iso(draft.start)
            fields["EndDateTime"] = _iso(draft.end)
        return fields

    def _event_unit(self, draft: EventDraft, key_field: str) -> _Unit:
        record = {"attributes": {"type": "Event"}, **self._event_fields(draft), key_field: activity_key(draft.key)}
        if draft.people_ids:
            record["WhoId"] = draft.people_ids[0]
        unit = _Unit(draft.key, "Event", record, "event", relation_parent_field="EventId")
        for person_id in dict.fromkeys(draft.people_ids[1:]):
            unit.relations.append(_event_relation(person_id))
        return unit

    def _event_changes(self, existing: ExistingEvent, draft: EventDraft) -> dict[str, Any]:
        wanted = self._event_fields(draft)
        changes: dict[str, Any] = {}
        current = {
            "Subject": existing.subject,
            "Location": existing.location or None,
            "Description": existing.description or None,
            "IsAllDayEvent": existing.is_all_day,
            "StartDateTime": _iso(existing.start) if existing.start else None,
            "EndDateTime": _iso(existing.end) if existing.end else None,
        }
        for name, value in wanted.items():
            if (current.get(name) or None) != (value or None) and not (name == "IsAllDayEvent"
                                                                       and bool(current[name]) == bool(value)):
                changes[name] = value
        return changes

    # -- writes -----------------------------------------------------------------------------------
    def write(self, plan: WritePlan) -> WriteResult:
        """Write a plan in Composite requests of up to 5 collections of up to 200 records each.

        New records travel with their relation rows (:func:`pack_creates`); updates, deletes and
        relations of records that already exist fill the free collections.
        """
        result = WriteResult()
        if not plan:
            return result
        caps = self.capabilities()
        units: list[_Unit] = []
        for draft in plan.emails:
            unit = self._email_unit(draft, caps)
            if unit is None:
                result.rejected.append(Rejected(draft.key, "Task", "Enhanced Email is off and the Salesforce "
                                                f"field {self.key_field} is missing on activities."))
                continue
            units.append(unit)
        key_field = caps.activity_key_field
        for event in plan.new_events:
            if not key_field:
                result.rejected.append(Rejected(event.key, "Event", f"The Salesforce field {self.key_field} is "
                                                "missing on activities, so meetings cannot be deduplicated."))
                continue
            units.append(self._event_unit(event, key_field))
        groups, overflow = pack_creates(units)

        updates: list[tuple[str, str, dict[str, Any]]] = []  # (key, label, record)
        extra_relations: list[tuple[_Unit, dict[str, Any]]] = []
        for existing, changed in plan.changed_events:
            changes = self._event_changes(existing, changed)
            if changes:
                updates.append((existing.key, "update", {"attributes": {"type": "Event"}, "Id": existing.id,
                                                         **changes}))
            else:
                result.events_unchanged += 1
            missing = [p for p in dict.fromkeys(changed.people_ids) if p not in existing.related_ids]
            if missing:
                holder = _Unit(existing.key, "Event", {}, "event", relation_parent_field="EventId", id=existing.id)
                extra_relations.extend((holder, _event_relation(p)) for p in missing)
        if caps.enhanced_email:
            for repair in plan.sender_repairs:
                if repair.draft.from_id:
                    holder = _Unit(repair.draft.key, "EmailMessage", {}, "email",
                                   relation_parent_field="EmailMessageId", id=repair.record_id, repair=True)
                    extra_relations.append((holder, _sender_relation(repair.draft)))
        deletes: list[tuple[str, str]] = []
        for existing, action in plan.cancelled_events:
            if action == "delete":
                deletes.append((existing.key, existing.id))
            elif not existing.subject.startswith(CANCELLED_PREFIX):
                subject = clip(CANCELLED_PREFIX + existing.subject, FIELD_LIMITS["Event"]["Subject"])
                updates.append((existing.key, "mark", {"attributes": {"type": "Event"}, "Id": existing.id,
                                                       "Subject": subject}))
            else:
                result.events_unchanged += 1
        standalone: list[_Sub] = []
        for start in range(0, len(updates), COLLECTION_MAX):
            chunk_updates = updates[start:start + COLLECTION_MAX]
            standalone.append(_Sub("PATCH", records=[r for _, _, r in chunk_updates],
                                   meta=[(k, label) for k, label, _ in chunk_updates], role="update"))
        for start in range(0, len(deletes), COLLECTION_MAX):
            chunk_deletes = deletes[start:start + COLLECTION_MAX]
            standalone.append(_Sub("DELETE", ids=[i for _, i in chunk_deletes],
                                   meta=[(k, "delete") for k, _ in chunk_deletes], role="delete"))
        for start in range(0, len(extra_relations), COLLECTION_MAX):
            standalone.append(_Sub("POST", relations=extra_relations[start:start + COLLECTION_MAX], role="relation"))
        # Independent work fills the free collections of the last request, then requests of its own.
        for sub in standalone:
            if groups and len(groups[-1]) < COMPOSITE_MAX_HEAVY:
                groups[-1].append(sub)
            else:
                groups.append([sub])
        # Relations of a record too big to travel whole go after the request that creates it.
        for start in range(0, len(overflow), COMPOSITE_MAX_HEAVY):
            groups.append(overflow[start:start + COMPOSITE_MAX_HEAVY])

        pending = groups
        while pending:
            group, pending = pending[0], pending[1:]
            retry = self._send_group(group, result)
            pending = [retry[k:k + COMPOSITE_MAX_HEAVY] for k in range(0, len(retry), COMPOSITE_MAX_HEAVY)] + pending
        self._remember_writes(units, plan, result)
        return result

    def _remember_writes(self, units: list[_Unit], plan: WritePlan, result: WriteResult) -> None:
        """Keep the per-run caches true after a write: what now exists, and meetings to ask about again."""
        for unit in units:
            if unit.kind == "email" and unit.key in result.written_keys:
                self._emails[unit.key] = True
            elif unit.kind == "event":
                self._events.pop(unit.key, None)
        for existing, _ in plan.changed_events:
            self._events.pop(existing.key, None)
        for existing, _ in plan.cancelled_events:
            self._events.pop(existing.key, None)
        for repair in plan.sender_repairs:
            self._email_records.pop(repair.draft.key, None)

    def _send_group(self, group: list[_Sub], result: WriteResult) -> list[_Sub]:
        """Send one Composite request; returns relation subrequests to resend with resolved ids."""
        collection = f"{self._path}/composite/sobjects"
        in_group = {id(s) for s in group}
        body: list[dict[str, Any]] = []
        for index, sub in enumerate(group):
            sub.ref = f"c{index}"
            if sub.role == "delete":
                query = urlencode({"ids": ",".join(sub.ids), "allOrNone": "false"})
                body.append({"method": "DELETE", "url": f"{collection}?{query}", "referenceId": sub.ref})
                continue
            if sub.role == "relation":
                records, kept = [], []
                sub.referenced = False
                for unit, template in sub.relations:
                    create = unit.create
                    if unit.id:
                        ref = unit.id
                    elif create is not None and id(create) in in_group and not unit.failed:
                        ref = f"@{{{create.ref}[{create.position(unit)}].id}}"
                        sub.referenced = True
                    else:
                        continue  # the parent record was refused: nothing to relate
                    records.append({**template, unit.relation_parent_field: ref})
                    kept.append((unit, template))
                sub.relations = kept
                sub.records = records
            if not sub.records:
                body.append({"method": "GET", "url": f"{self._path}/limits", "referenceId": sub.ref})
                sub.role = "noop"
                continue
            body.append({"method": sub.method, "url": collection, "referenceId": sub.ref,
                         "body": {"allOrNone": False, "records": sub.records}})
        if all(s.role == "noop" for s in group):
            return []
        responses = self._composite(body, timeout=WRITE_TIMEOUT_SECONDS)
        by_ref = {r.get("referenceId"): r for r in responses}
        resend: list[_Sub] = []
        for sub in group:
            if sub.role == "noop":
                continue
            response = by_ref.get(sub.ref) or {}
            status = int(response.get("httpStatusCode") or 0)
            items = response.get("body")
            if status >= 300 or not isinstance(items, list) or len(items) != max(len(sub.records), len(sub.ids)):
                code = ""
                if isinstance(items, list) and items and isinstance(items[0], dict):
                    code = str(items[0].get("errorCode") or "")
                if code == "REQUEST_LIMIT_EXCEEDED":
                    raise ApiLimitExceeded()
                transient = code in _TRANSIENT_CODES or status >= 500 or status == 0
                if sub.role == "relation" and (sub.referenced or (transient and not sub.retried)):
                    # A reference to a refused parent fails the whole subrequest: resend the rest once,
                    # with the ids their parents got (no references, so it cannot fail that way again).
                    # A transient refusal is resent once too.
                    again = _Sub("POST", relations=[(u, t) for u, t in sub.relations if u.id], role="relation",
                                 retried=sub.retried or transient)
                    if again.relations:
                        resend.append(again)
                    continue
                self._whole_failure(sub, code or str(status), result, transient)
                continue
            again_rows = self._record_results(sub, items, result)
            if again_rows:
                resend.append(_Sub("POST", relations=again_rows, role="relation", retried=True))
        return resend

    def _whole_failure(self, sub: _Sub, code: str, result: WriteResult, transient: bool) -> None:
        if transient:
            reason = f"{code}: Salesforce could not save the request just now"
            refused = result.transient
        else:
            reason = f"{code}: Salesforce refused the whole request"
            refused = result.rejected
        refused.extend(sub.refused(index, reason) for index in range(sub.record_count()))

    def _record_results(self, sub: _Sub, items: list[Any], result: WriteResult) -> list[tuple[_Unit, dict[str, Any]]]:
        """Count each record's outcome; returns relation rows refused for a transient reason, to resend once."""
        again: list[tuple[_Unit, dict[str, Any]]] = []
        for index, item in enumerate(items):
            item = item if isinstance(item, dict) else {}
            ok = bool(item.get("success"))
            errors = [e for e in item.get("errors") or [] if isinstance(e, dict)]
            codes = {str(e.get("statusCode") or "") for e in errors}
            reason = safe_reason(errors[0]) if errors else "Salesforce refused the record"
            if not ok and codes & _TRANSIENT_CODES and not codes & _DUPLICATE_CODES:
                if sub.role == "relation" and not sub.retried:
                    again.append(sub.relations[index])
                else:
                    result.transient.append(sub.refused(index, reason))
                continue
            if sub.role == "create":
                unit = sub.units[index]
                if ok:
                    unit.id = str(item.get("id") or "")
                    result.written_keys.add(unit.key)
                    if unit.kind == "email":
                        result.emails_written += 1
                    else:
                        result.events_written += 1
                elif codes & _DUPLICATE_CODES:
                    # Written meanwhile by a colleague's run: already logged, nothing lost.
                    unit.failed = True
                    result.duplicates += 1
                    result.written_keys.add(unit.key)
                else:
                    result.rejected.append(sub.refused(index, reason))
            elif sub.role == "relation":
                unit = sub.relations[index][0]
                if ok:
                    result.relations_written += 1
                    if unit.repair:
                        result.relations_repaired += 1
                elif not codes & _DUPLICATE_CODES:
                    result.rejected.append(sub.refused(index, reason))
            elif sub.role == "update":
                label = sub.meta[index][1]
                if ok:
                    if label == "mark":
                        result.events_marked += 1
                    else:
                        result.events_updated += 1
                else:
                    result.rejected.append(sub.refused(index, reason))
            elif sub.role == "delete":
                if ok or codes & _GONE_CODES:
                    result.events_deleted += 1
                else:
                    result.rejected.append(sub.refused(index, reason))
        return again


def _sender_relation(draft: EmailDraft) -> dict[str, Any]:
    """The FromAddress relation of an email (the matched sender, or the owner for sent mail)."""
    return {
        "attributes": {"type": "EmailMessageRelation"},
        "RelationId": draft.from_id,
        "RelationType": "FromAddress",
        "RelationAddress": clip(draft.from_address, FIELD_LIMITS["EmailMessage"]["RelationAddress"], ""),
    }


def _event_relation(person_id: str) -> dict[str, Any]:
    return {"attributes": {"type": "EventRelation"}, "RelationId": person_id, "IsParent": True, "IsWhat": False,
            "IsInvitee": False}


def open_crm(
    settings: Settings,
    credentials: SalesforceCredentials,
    org_id: str,
    owner_id: str,
    caps_cache: CapabilityCache | None = None,
    on_usage: Callable[[ApiUsage], None] | None = None,
) -> SalesforceCrm:
    """The Salesforce connector for one run of one user's sync."""
    return SalesforceCrm(settings, credentials, org_id, owner_id, caps_cache=caps_cache, on_usage=on_usage)
