"""Fakes served from a process of their own (``sandbox.serve_process``): calls, errors, the fakes' servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.serve_process import FakesProcess, FakesProcessError
from sandbox.tls import CertPair, TestCA


class Unpicklable(Exception):
    """An error carrying something that cannot cross processes."""

    def __init__(self) -> None:
        super().__init__("carries a lock")
        import threading

        self.lock = threading.Lock()


class Served:
    """What the child builds: a fake Graph on keep-alive https, and a few methods to call."""

    def __init__(self, cert: CertPair, ca_path: str) -> None:
        from sandbox.harness.graph import GraphHarness

        self.harness = GraphHarness(cert, ca_path)
        self.closed = False

    def pid(self) -> int:
        """The child's process id."""
        return os.getpid()

    def url(self) -> str:
        """The fake Graph's address."""
        return str(self.harness.graph_server.url)

    def requests_seen(self) -> int:
        """Requests the fake Graph received."""
        return len(self.harness.graph_server.recorder.calls)

    def add(self, a: int, b: int = 0) -> int:
        """A sum (arguments cross as given)."""
        return a + b

    def fail(self, unpicklable: bool) -> None:
        """Raise a ValueError, or an error that cannot be pickled."""
        if unpicklable:
            raise Unpicklable()
        raise ValueError("refused in the child")

    def close(self) -> None:
        """Stop the fakes."""
        self.harness.close()


@pytest.fixture(scope="module")
def served(ca: TestCA, server_cert: CertPair) -> Iterator[FakesProcess]:
    """One child for the module's tests (spawning one takes about a second)."""
    with FakesProcess(Served, server_cert, ca.ca_path) as process:
        yield process


def test_the_object_lives_in_another_process_and_answers_calls(served: FakesProcess) -> None:
    assert served.call("pid") == served.pid != os.getpid()
    assert served.call("add", 2, b=3) == 5


def test_its_fakes_answer_over_https_from_there(served: FakesProcess, ca: TestCA) -> None:
    before = served.call("requests_seen")
    answer = requests.get(f"{served.call('url')}/v1.0/me", verify=ca.ca_path, timeout=10)
    assert answer.status_code == 401  # no token: the fake Graph itself answered
    assert served.call("requests_seen") == before + 1


@pytest.mark.parametrize("unpicklable, error", [(False, ValueError), (True, FakesProcessError)])
def test_an_error_in_the_child_is_raised_here(served: FakesProcess, unpicklable: bool, error: type) -> None:
    with pytest.raises(error) as raised:
        served.call("fail", unpicklable)
    assert ("refused in the child" if not unpicklable else "carries a lock") in str(raised.value)
    assert served.call("add", 1) == 1  # the child goes on serving


@pytest.mark.parametrize("name", ["_private", "__class__", "missing"])
def test_only_public_methods_are_callable(served: FakesProcess, name: str) -> None:
    with pytest.raises((AttributeError, FakesProcessError)):
        served.call(name)


class Refuses:
    """A factory that fails."""

    def __init__(self) -> None:
        raise ValueError("no fakes today")


def test_a_factory_that_fails_fails_start() -> None:
    with pytest.raises(ValueError, match="no fakes today"):
        FakesProcess(Refuses).start()


def test_stop_closes_the_object_and_ends_the_child(ca: TestCA, server_cert: CertPair) -> None:
    process = FakesProcess(Served, server_cert, ca.ca_path).start()
    url: Any = process.call("url")
    process.stop()
    assert process.pid is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v1.0/me", verify=ca.ca_path, timeout=5)
    with pytest.raises(RuntimeError):
        process.call("pid")
