"""The routing of the fake Salesforce REST API: one Flask view, composite requests, failures on demand."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, Response, request

from sandbox.salesforce_rest.data import ApiFailure, RestCall, data_of
from sandbox.salesforce_rest.queries import describe, describe_global, limits, query_more, run_query
from sandbox.salesforce_rest.records import collection


def register(app: Flask, state: Any) -> None:
    """Add the REST data API to the fake's app."""
    data = data_of(state)
    resource = re.compile(r"^/services/data/v(?P<version>\d+\.\d+)/(?P<rest>.*)$")

    def dispatch(method: str, url: str, body: Any, call: RestCall) -> tuple[int, Any]:
        parts = urlsplit(url)
        match = resource.match(parts.path)
        if not match:
            raise ApiFailure(404, "NOT_FOUND", "The requested resource does not exist")
        version, rest = match.group("version"), match.group("rest").rstrip("/")
        query = parse_qs(parts.query, keep_blank_values=True)
        if rest in ("query", "queryAll") and method == "GET":
            soql = (query.get("q") or [""])[0]
            call.queries.append(soql)
            call.subrequests.append(("GET", "query"))
            return 200, run_query(data, soql, version)
        if rest.startswith("query/") and method == "GET":
            call.subrequests.append(("GET", "query"))
            return 200, query_more(data, rest.split("/", 1)[1], version)
        if rest == "composite/sobjects" and method in ("POST", "PATCH", "DELETE"):
            call.subrequests.append((method, "collection"))
            status, result, written = collection(data, method, query, body)
            call.records_written += written
            return status, result
        if rest == "sobjects" and method == "GET":
            call.subrequests.append(("GET", "describe"))
            return 200, describe_global(data, version)
        describe_match = _DESCRIBE.match(rest)
        if describe_match and method == "GET":
            call.subrequests.append(("GET", "describe"))
            return 200, describe(data, describe_match.group(1))
        if rest == "limits" and method == "GET":
            call.subrequests.append(("GET", "limits"))
            return 200, limits(data)
        raise ApiFailure(404, "NOT_FOUND", f"no fake for {method} {rest}")

    def resolve(value: Any, results: dict[str, Any]) -> Any:
        # Rewritten in place (the parsed request is not read again), and only text holding "@{":
        # a collection's records are walked without a call for each plain value.
        if isinstance(value, str):
            return _REF.sub(lambda match: _lookup(match, results), value) if "@{" in value else value
        if isinstance(value, (dict, list)):
            for key, item in value.items() if isinstance(value, dict) else enumerate(value):
                if isinstance(item, str):
                    if "@{" in item:
                        value[key] = _REF.sub(lambda match: _lookup(match, results), item)
                elif isinstance(item, (dict, list)):
                    resolve(item, results)
        return value

    def composite(body: Any, call: RestCall) -> dict[str, Any]:
        subrequests = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subrequests, list) or not subrequests:
            raise ApiFailure(400, "INVALID_REQUEST", "compositeRequest is required")
        if len(subrequests) > 25:
            raise ApiFailure(400, "INVALID_REQUEST", "at most 25 subrequests")
        heavy = sum(1 for s in subrequests if _HEAVY.search(str(s.get("url", ""))))
        if heavy > 5:
            raise ApiFailure(400, "INVALID_REQUEST", "at most 5 query or sObject Collection subrequests")
        results: dict[str, Any] = {}
        responses = []
        for sub in subrequests:
            ref = str(sub.get("referenceId") or "")
            try:
                url = resolve(str(sub.get("url", "")), results)
                sub_body = resolve(sub.get("body"), results)
                status, result = dispatch(str(sub.get("method", "GET")), url, sub_body, call)
            except ApiFailure as exc:
                status, result = exc.status, exc.body
            results[ref] = result if status < 300 else None
            responses.append({"body": result, "httpHeaders": {}, "httpStatusCode": status, "referenceId": ref})
        return {"compositeResponse": responses}

    @app.route("/services/data/<path:rest>", methods=["GET", "POST", "PATCH", "DELETE"])

    def rest_api(rest: str) -> Response:
        path = request.path
        kind = "composite" if path.endswith("/composite") else ""
        call = RestCall(kind=kind, method=request.method, path=path)
        result: Any
        try:
            signed_in = state.user_for_bearer(request.headers.get("Authorization"))
            if signed_in is None:
                raise ApiFailure(401, "INVALID_SESSION_ID", "Session expired or invalid")
            data.acting.user_id = signed_in.user_id
            with data.lock:
                if data.limit_exceeded:
                    raise ApiFailure(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                if data.fail_unavailable > 0:
                    data.fail_unavailable -= 1
                    raise ApiFailure(503, "SERVER_UNAVAILABLE", "Server unavailable")
                data.api_used += 1
            body = request.get_json(silent=True) if request.data else None
            if kind == "composite" and data.fail_write_after is not None and _writes(body):
                with data.lock:
                    if data.fail_write_after == 0:
                        data.fail_write_after = None
                        raise ApiFailure(503, "SERVER_UNAVAILABLE", "Server unavailable")
                    data.fail_write_after -= 1
            if kind == "composite":
                if request.method != "POST":
                    raise ApiFailure(405, "METHOD_NOT_ALLOWED", "use POST")
                status, result = 200, composite(body, call)
                if _writes(body):
                    with data.lock:
                        if data.lose_write_answers > 0:
                            # Committed above; the keep-alive server now cuts the connection unanswered.
                            data.lose_write_answers -= 1
                            call.answered = False
                            request.environ["fake.cut"] = True
            else:
                status, result = dispatch(request.method, request.full_path.rstrip("?"), body, call)
                call.kind = call.subrequests[0][1] if call.subrequests else "other"
                if call.kind == "query" and "/query/" in path:
                    call.kind = "query_more"
        except ApiFailure as exc:
            status, result = exc.status, exc.body
        call.status = status
        with data.lock:
            data.calls.append(call)
        resp = Response(json.dumps(result), status=status, mimetype="application/json")
        resp.headers["Sforce-Limit-Info"] = f"api-usage={data.api_used}/{data.api_max}"
        return resp


_MISSING = object()
_REF = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_REF_STEP = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]")
_HEAVY = re.compile(r"/(query|queryAll|composite/sobjects)(\?|/|$)")
_DESCRIBE = re.compile(r"^sobjects/(\w+)/describe$")


def _lookup(match: re.Match[str], results: dict[str, Any]) -> str:
    """The text an ``@{ref.path}`` reference stands for, from the earlier subrequests' results."""
    current: Any = results.get(match.group(1), _MISSING)
    for name, index in _REF_STEP.findall(match.group(2)):
        if current is _MISSING or current is None:
            break
        if name:
            current = current.get(name, _MISSING) if isinstance(current, dict) else _MISSING
        else:
            current = current[int(index)] if isinstance(current, list) and int(index) < len(current) \
                else _MISSING
    if current is _MISSING or current is None:
        raise ApiFailure(400, "PROCESSING_HALTED", f"Invalid reference specification: {match.group(0)}")
    return str(current)


def _writes(body: Any) -> bool:
    """True when a composite request body creates, changes or deletes records."""
    subs = body.get("compositeRequest") if isinstance(body, dict) else None
    return isinstance(subs, list) and any(
        isinstance(s, dict) and str(s.get("method", "GET")) != "GET" and "/composite/sobjects" in str(s.get("url", ""))
        for s in subs)
