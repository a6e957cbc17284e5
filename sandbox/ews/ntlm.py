"""NTLM for the fake EWS, done by pyspnego's public acceptor (``spnego.server(protocol="ntlm")``).

The acceptor runs the real handshake: it answers a type 1 with a type 2 challenge (fresh server
challenge, target info), and on the type 3 recomputes the NTLMv2 response from the user's password
and checks the MIC when the client sent one. Channel bindings are not checked (none are given).

pyspnego's acceptor takes no credential argument: it looks the user up in the file that the
``NTLM_USER_FILE`` environment variable names (its documented interface, shared with gss-ntlmssp), in
the Heimdal ``DOMAIN:USER:PASSWORD`` form. So each step that needs the file writes the current
directory to a temporary one and points the variable at it for just that step, under one process-wide
lock (the variable is process-wide, and several fake servers may run in one test process).
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import spnego

from sandbox.ews.state import EwsUser

_ENV = "NTLM_USER_FILE"
_ENV_LOCK = threading.Lock()
# The Authenticate message's NtChallengeResponseFields start at byte 20 (length first, 2 bytes LE).
_NT_RESPONSE_LENGTH = slice(20, 22)


def user_file_lines(users: Iterable[EwsUser]) -> list[str]:
    """The Heimdal lines under which an NTLM login may name each user (as :meth:`EwsUser.matches_login`).

    A password holding ``:`` cannot be written in that format, so such a user cannot sign in by NTLM.
    """
    lines: list[str] = []
    for user in users:
        if ":" in user.password:
            continue
        names = [("", user.email), *(("", alias) for alias in user.aliases), ("", user.account),
                 (user.domain, user.account)]
        lines.extend(f"{domain}:{name}:{user.password}" for domain, name in names if ":" not in domain + name)
    return lines


@contextmanager
def _user_file(users: Iterable[EwsUser]) -> Iterator[None]:
    """``NTLM_USER_FILE`` names a file holding ``users`` while the block runs."""
    with _ENV_LOCK, tempfile.NamedTemporaryFile("w", suffix=".ntlm", encoding="utf-8") as handle:
        handle.write("\n".join(user_file_lines(users)) + "\n")
        handle.flush()
        previous = os.environ.get(_ENV)
        os.environ[_ENV] = handle.name
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(_ENV, None)
            else:
                os.environ[_ENV] = previous


def challenge(negotiate: bytes, users: Iterable[EwsUser]) -> tuple[Any, str]:
    """(the acceptor context, the base64 type 2 challenge) for a type 1 message."""
    with _user_file(users):  # the acceptor refuses to start without the file
        context = spnego.server(protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm)
    token = context.step(negotiate)
    return context, base64.b64encode(token or b"").decode()


def verify(context: Any, authenticate: bytes, users: Iterable[EwsUser]) -> tuple[str, str] | None:
    """(domain, user name) the type 3 message proved, or None (bad response, unknown user, NTLMv1)."""
    if int.from_bytes(authenticate[_NT_RESPONSE_LENGTH], "little") <= 24:
        return None  # an NTLMv1 (24-byte) response, or none: refused, as the server is configured
    try:
        with _user_file(users):
            context.step(authenticate)
    except Exception:  # whatever pyspnego raises on a malformed or wrong answer, the login is refused
        return None
    principal = context.client_principal if context.complete else None
    if not principal:
        return None
    domain, _, name = principal.rpartition("\\")
    return domain, name
