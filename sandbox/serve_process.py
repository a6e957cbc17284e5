"""Serve fakes from a process of their own, as production has its services on other machines.

A benchmark that runs the fakes in its own interpreter counts their CPU against the engine and
makes them compete with it for the GIL. :class:`FakesProcess` builds an object (the fakes and
whatever seeds and inspects them) in a child process started with ``spawn`` (no threads or locks
inherited), and calls its public methods over a pipe: arguments and results are pickled, an error
raised there is raised here. The fakes' servers run in the child's threads, on loopback https, so
the clients reach them exactly as before.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

# How long the child may take to build its object (TLS certificates, seeded fakes) or to stop.
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 10.0
_STOP = "__stop__"


class FakesProcessError(RuntimeError):
    """The child failed, and its error could not be sent back as itself (the traceback is the message)."""


def _serve(conn: Connection, factory: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The child's main: build the object, then answer calls until told to stop."""
    try:
        target = factory(*args)
    except BaseException as exc:  # the parent must hear why, whatever it is
        conn.send(("error", _portable(exc)))
        return
    conn.send(("ok", None))
    try:
        while True:
            try:
                name, call_args, call_kwargs = conn.recv()
            except EOFError:
                return  # the parent went away
            if name == _STOP:
                break
            try:
                if name.startswith("_"):
                    raise AttributeError(f"{name} is not public")
                conn.send(("ok", getattr(target, name)(*call_args, **call_kwargs)))
            except BaseException as exc:  # sent back, raised in the parent
                conn.send(("error", _portable(exc)))
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
    conn.send(("ok", None))


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a :class:`FakesProcessError` carrying its traceback."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own object, just pickled: is it portable?)
    except Exception:
        return FakesProcessError("".join(traceback.format_exception(exc)))
    return exc


class FakesProcess:
    """``factory(*args)`` built and served in a child process; :meth:`call` runs one of its methods there."""

    def __init__(self, factory: Callable[..., Any], *args: Any) -> None:
        self._factory = factory
        self._args = args
        self._lock = threading.Lock()  # one call on the pipe at a time
        self._conn: Connection | None = None
        self._proc: multiprocessing.process.BaseProcess | None = None

    def start(self) -> FakesProcess:
        """Start the child and wait until its object is built (its error raised here)."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self._factory, self._args), daemon=True,
                                 name="fakes")
        self._proc.start()
        child.close()
        self._conn = parent
        self._receive(START_TIMEOUT_SECONDS)
        return self

    @property
    def pid(self) -> int | None:
        """The child's process id (None before :meth:`start`)."""
        return self._proc.pid if self._proc is not None else None

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``name(*args, **kwargs)`` on the child's object and return its (pickled) result."""
        if self._conn is None:
            raise RuntimeError("FakesProcess not started")
        with self._lock:
            self._conn.send((name, args, kwargs))
            return self._receive(None)

    def stop(self) -> None:
        """Close the child's object (its ``close()``, if any) and end the child."""
        if self._conn is None or self._proc is None:
            return
        try:
            with self._lock:
                self._conn.send((_STOP, (), {}))
                self._receive(STOP_TIMEOUT_SECONDS)
        except (OSError, EOFError, FakesProcessError, TimeoutError):
            pass  # already gone: nothing left to close
        finally:
            self._conn.close()
            self._proc.join(STOP_TIMEOUT_SECONDS)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._conn = None

    def __enter__(self) -> FakesProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _receive(self, timeout: float | None) -> Any:
        assert self._conn is not None
        if timeout is not None and not self._conn.poll(timeout):
            raise TimeoutError("the fakes' process did not answer")
        try:
            status, value = self._conn.recv()
        except EOFError as exc:
            raise FakesProcessError("the fakes' process ended") from exc
        if status == "error":
            raise value
        return value
