"""The WSGI application of the fake EWS: routing, injected failures, authentication (Basic, NTLM), SOAP dispatch."""

from __future__ import annotations

import base64
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree

from sandbox.ews import autodiscover_v2, ntlm
from sandbox.ews.autodiscover import autodiscover
from sandbox.ews.operations import EwsOperations
from sandbox.ews.soap import (
    AUTODISCOVER_PATH,
    EWS_PATH,
    METADATA_PATH,
    M,
    Response,
    S,
    T,
    el,
    envelope,
    fault_element,
    parse_xml,
    server_busy,
    xml_response,
)
from sandbox.ews.state import EwsUser, Failure, FakeEwsState


class FakeEws(EwsOperations):
    """The WSGI application of the fake server."""

    def __init__(self, state: FakeEwsState) -> None:
        self.state = state

    # ---- WSGI plumbing ---------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, headers, body = self.handle(environ)
        headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    def handle(self, environ: dict[str, Any]) -> Response:
        """Route one request."""
        path = environ.get("PATH_INFO", "")
        body = environ["wsgi.input"].read()
        failure = self._take_failure(kinds={"503", "unavailable", "500", "not_ews", "delay", "disconnect", "drip"})
        if failure is not None:
            early = self._fail(failure, environ)
            if early is not None:
                return early
        if environ["REQUEST_METHOD"] == "GET" and path.lower() == METADATA_PATH:
            with self.state.lock:
                self.state.operations.append("Metadata")
                override = self.state.metadata_override
            if override is not None:
                return "200 OK", [("Content-Type", "application/json")], override
            return "200 OK", [("Content-Type", "application/json")], json.dumps(
                self.state.metadata_document()).encode()
        if autodiscover_v2.is_v2_request(environ["REQUEST_METHOD"], path):
            with self.state.lock:
                if self.state.autodiscover_v2:  # an older server does not know the path
                    self.state.operations.append("AutodiscoverV2")
            return autodiscover_v2.answer(self.state.autodiscover_v2, path, environ.get("QUERY_STRING", ""),
                                          self.state.ews_url or f"{self.state.base_url}{EWS_PATH}")
        if environ["REQUEST_METHOD"] != "POST" or path.lower() not in (EWS_PATH.lower(), AUTODISCOVER_PATH):
            return "404 Not Found", [("Content-Type", "text/html")], b"<html><body>Not found</body></html>"
        user, denied = self._authenticate(environ)
        if user is None:
            assert denied is not None
            return denied
        if path.lower() == AUTODISCOVER_PATH:
            return autodiscover(self.state, user, body, environ.get("HTTP_HOST", ""))
        throttle = self._take_failure(kinds={"throttle"})
        if throttle is not None:
            return self._server_busy(throttle.retry_after)
        return self._soap(user, body)

    def _take_failure(self, kinds: set[str]) -> Failure | None:
        with self.state.lock:
            if self.state.failures and self.state.failures[0].kind in kinds:
                return self.state.failures.pop(0)
        return None

    def _fail(self, failure: Failure, environ: dict[str, Any]) -> Response | None:
        html = [("Content-Type", "text/html")]
        if failure.kind == "503":
            return ("503 Service Unavailable", [*html, ("Retry-After", str(int(failure.retry_after)))],
                    b"<html><body>Service Unavailable</body></html>")
        if failure.kind == "unavailable":
            return "502 Bad Gateway", html, b"<html><body>502 Bad Gateway</body></html>"
        if failure.kind == "500":
            return "500 Internal Server Error", html, b"<html><body>Runtime Error</body></html>"
        if failure.kind == "not_ews":
            return "200 OK", html, b"<html><head><title>Outlook</title></head><body>Sign in</body></html>"
        if failure.kind == "delay":
            time.sleep(failure.retry_after)
            return None
        if failure.kind == "drip":
            environ["fake.drip"] = failure.retry_after  # the connection handler drips the answer
            return None
        if failure.kind == "disconnect":
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            return "500 Internal Server Error", html, b""
        return None

    def _unauthorized(self, challenge: str | None = None) -> Response:
        headers = [("Content-Type", "text/html")]
        if challenge is not None:
            headers.append(("WWW-Authenticate", challenge))
        else:
            for method in self.state.auth_methods:
                value = "NTLM" if method == "NTLM" else 'Basic realm="exch01.acme.example"'
                headers.append(("WWW-Authenticate", value))
        return "401 Unauthorized", headers, b"<html><body>401 - Unauthorized</body></html>"

    def _authenticate(self, environ: dict[str, Any]) -> tuple[EwsUser | None, Any]:
        state = self.state
        conn = int(environ.get("fake.conn", 0))
        with state.lock:
            authed = state._ntlm_authed.get(conn)
            if authed is not None and authed in state.users:
                return state.users[authed], None
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "basic" and "Basic" in state.auth_methods:
            try:
                login, _, password = base64.b64decode(token).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return None, self._unauthorized()
            user = state.find_user("", login)
            if user is not None and hmac.compare_digest(user.password.encode(), password.encode()):
                return user, None
            return None, self._unauthorized()
        if scheme.lower() in ("ntlm", "negotiate") and "NTLM" in state.auth_methods:
            try:
                raw = base64.b64decode(token)
            except ValueError:
                return None, self._unauthorized()
            message_type = int.from_bytes(raw[8:12], "little") if len(raw) >= 12 else 0
            if message_type == 1:
                return None, self._unauthorized(f"{scheme} {self._ntlm_challenge(conn, raw)}")
            if message_type == 3:
                user = self._ntlm_verify(conn, raw)
                if user is not None:
                    return user, None
        return None, self._unauthorized()

    def _ntlm_challenge(self, conn: int, raw: bytes) -> str:
        """Start this connection's handshake: the type 2 challenge for its type 1."""
        with self.state.lock:
            users = list(self.state.users.values())
        context, token = ntlm.challenge(raw, users)
        with self.state.lock:
            self.state._ntlm_pending[conn] = context
        return token

    def _ntlm_verify(self, conn: int, raw: bytes) -> EwsUser | None:
        """Finish the handshake: the user the type 3 proves (the connection is then authenticated)."""
        with self.state.lock:
            context = self.state._ntlm_pending.pop(conn, None)
            users = list(self.state.users.values())
        if context is None:
            return None  # a type 3 on a connection that never got our challenge
        login = ntlm.verify(context, raw, users)
        user = self.state.find_user(*login) if login is not None else None
        if user is None:
            return None
        with self.state.lock:
            self.state._ntlm_authed[conn] = user.email
        return user

    def _impersonated(self, user: EwsUser, root: Any) -> tuple[EwsUser, Response | None]:
        """Who a request acts as: its ExchangeImpersonation mailbox, when the caller holds the role for it."""
        header = root.find(S + "Header")
        target = header.findtext(f"{T}ExchangeImpersonation/{T}ConnectingSID/{T}PrimarySmtpAddress") \
            if header is not None else None
        if not target:
            return user, None
        target = target.strip().lower()
        with self.state.lock:
            granted = self.state.impersonation.get(user.email, set())
            other = self.state.users.get(target)
        if other is None:
            fault = fault_element("ErrorNonExistentMailbox", f"No mailbox with such guid or SMTP address {target}.")
            return user, xml_response("500 Internal Server Error", envelope(self.state.version, fault))
        if "*" not in granted and target not in granted:
            fault = fault_element("ErrorImpersonateUserDenied", "The account does not have permission to "
                                                                "impersonate the requested user.")
            return user, xml_response("500 Internal Server Error", envelope(self.state.version, fault))
        return other, None

    def _server_busy(self, retry_after: float) -> Response:
        with self.state.lock:
            self.state.operations.append("ErrorServerBusy")
        return server_busy(retry_after)

    def _soap(self, user: EwsUser, raw: bytes) -> Response:
        try:
            root = parse_xml(raw)
            request = root.find(S + "Body")[0]
        except (etree.XMLSyntaxError, TypeError, IndexError):
            return xml_response("500 Internal Server Error", b"<html>Bad request</html>")
        op = etree.QName(request).localname
        with self.state.lock:
            self.state.operations.append(op)
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            fault = fault_element("ErrorInvalidRequest", f"{op} is not supported")
            return xml_response("500 Internal Server Error", envelope(self.state.version, fault))
        acting, refused = self._impersonated(user, root)
        if refused is not None:
            return refused
        response = el(M + f"{op}Response", None)
        messages = el(M + "ResponseMessages", response)
        with self.state.lock:
            handler(acting, request, messages)
        return xml_response("200 OK", envelope(self.state.version, response))

