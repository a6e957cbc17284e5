"""The REST data API of the fake Salesforce: query, composite, sObject Collections, describe, limits.

Registered on the fake's Flask app by :func:`register`. It keeps records in memory
(:class:`SalesforceData`, reachable as ``state.rest``) and behaves as the real API does where the
sync engine depends on it:

* A small SOQL subset: ``SELECT f, (SELECT g FROM ChildRel) FROM Obj WHERE a IN (...) AND b = x
  ORDER BY f LIMIT n``; text comparisons ignore case; results page at ``query_page_size`` rows with
  ``nextRecordsUrl``.
* Composite (at most 25 subrequests, at most 5 of them queries or collections, ``@{ref[i].id}``
  references, one API call for the whole request) and sObject Collections (at most 200 records,
  ``allOrNone``, per-record errors: validation rules, ``STRING_TOO_LONG`` (echoing the value, as
  Salesforce does), deleted or unknown references, duplicate external ids).
* ``EmailMessage`` junction lists (``ToIds``, ``CcIds``, ``BccIds``) create ``EmailMessageRelation``
  rows; Enhanced Email can be switched off (no ``EmailMessageRelation`` in the global describe).
* ``Sforce-Limit-Info: api-usage=N/M`` on every response; injectable ``REQUEST_LIMIT_EXCEEDED``,
  503s (the next calls, or the write call after N successful ones) and slow writes; expired
  sessions through the base fake's tokens.
* Every REST call is recorded in :attr:`SalesforceData.calls` for exact call-count assertions.

The package: :mod:`~sandbox.salesforce_rest.data` (records, metadata, recorded calls, knobs),
:mod:`~sandbox.salesforce_rest.soql` (the SOQL subset), :mod:`~sandbox.salesforce_rest.queries` (the
read side), :mod:`~sandbox.salesforce_rest.records` (the validated writes) and
:mod:`~sandbox.salesforce_rest.api` (the Flask view, composite, failures on demand).
"""

from __future__ import annotations

from sandbox.salesforce_rest.api import register
from sandbox.salesforce_rest.data import (
    CHILD_RELATIONSHIPS,
    DATETIME_FIELDS,
    FIELD_LENGTHS,
    ID_PREFIX,
    JUNCTION_TYPES,
    REFERENCE_FIELDS,
    ApiFailure,
    RestCall,
    Rule,
    SalesforceData,
    data_of,
)
from sandbox.salesforce_rest.soql import Query, SoqlError, parse_soql

__all__ = [
    "CHILD_RELATIONSHIPS", "DATETIME_FIELDS", "FIELD_LENGTHS", "ID_PREFIX", "JUNCTION_TYPES", "REFERENCE_FIELDS",
    "ApiFailure", "Query", "RestCall", "Rule", "SalesforceData", "SoqlError", "data_of", "parse_soql", "register",
]
