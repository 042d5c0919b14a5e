"""A total deadline for one HTTP exchange: connecting, the headers and the whole body.

requests' timeouts bound each socket operation, not the exchange: a server that
sends a few bytes now and then keeps a request, and whatever waits on it, alive
for hours. Inside ``within(seconds)``, every connection the thread's request
reads from is shut down when the deadline passes, which ends a blocked read at
once; the request then fails, and ``Deadline.fired`` says it was the deadline.

Connections of a ``DeadlineAdapter`` are guarded from the moment the request has
been sent, so slow headers are cut too; on any other adapter (a test's plain
session) ``Deadline.cover(response)`` guards the body once the headers are in.

The Atlas client (which never imports Django) and the image downloads share
this module, so it imports neither Django nor any other part of pfsync.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = [
    "Deadline",
    "DeadlineAdapter",
    "error_causes",
    "is_timeout",
    "os_error_text",
    "within",
]

_current = threading.local()


class _Guard:
    """Shuts one socket down at the deadline, unless stopped first.

    It works on its own duplicate of the socket's descriptor, which stays valid
    (never reused for another file) until ``stop()``, whatever urllib3 does with
    its own.
    """

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._deadline = deadline
        self._lock = threading.Lock()
        self._sock: socket.socket | None = sock
        self._timer = threading.Timer(max(0.0, deadline.at - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._sock is None:
                return
            self._deadline.fired = True
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Disarm; after this the connection is never touched."""
        self._timer.cancel()
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class Deadline:
    """The moment one HTTP exchange must be over, and the guards that enforce it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = float(seconds)
        self.at = time.monotonic() + self.seconds
        #: Whether a guarded connection was shut down because the deadline passed.
        self.fired = False
        self._guards: list[_Guard] = []
        self._lock = threading.Lock()
        self._stopped = False

    def remaining(self) -> float:
        """Seconds left (0 once the deadline has passed)."""
        return max(0.0, self.at - time.monotonic())

    @property
    def passed(self) -> bool:
        """Whether the deadline has passed or cut a connection."""
        return self.fired or time.monotonic() >= self.at

    def timeouts(self) -> tuple[float, float]:
        """requests' (connect, read) timeouts: what is left of the deadline, for each."""
        left = max(self.remaining(), 0.001)
        return left, left

    def guard(self, sock: Any) -> None:
        """Shut ``sock`` down at the deadline (a socket, or anything with a fileno)."""
        duplicate = _duplicate(sock)
        if duplicate is None:
            return
        with self._lock:
            if self._stopped:
                duplicate.close()
                return
            self._guards.append(_Guard(duplicate, self))

    def cover(self, response: requests.Response) -> None:
        """Guard the response's connection, unless its adapter already did."""
        with self._lock:
            if self._guards:
                return
        self.guard(getattr(response, "raw", None))

    def stop(self) -> None:
        """Disarm every guard; the connections are left alone from now on."""
        with self._lock:
            self._stopped = True
            guards, self._guards = self._guards, []
        for guard in guards:
            guard.stop()


@contextlib.contextmanager
def within(seconds: float) -> Iterator[Deadline]:
    """A deadline ``seconds`` from now for the requests this thread makes in the block."""
    deadline = Deadline(seconds)
    previous = getattr(_current, "deadline", None)
    _current.deadline = deadline
    try:
        yield deadline
    finally:
        _current.deadline = previous
        deadline.stop()


def _duplicate(source: Any) -> socket.socket | None:
    """A duplicate of a socket (or of a response's), or None when there is none."""
    try:
        descriptor = os.dup(source.fileno())
    except (AttributeError, OSError, ValueError, TypeError):
        return None
    try:
        return socket.socket(fileno=descriptor)
    except OSError:
        os.close(descriptor)
        return None


# ---------------------------------------------------------------------------
# Connections guarded from the moment the request has been sent


class _GuardedMixin:
    """Arms the sending thread's deadline on the socket before the headers are read."""

    sock: socket.socket | None

    def getresponse(self) -> Any:
        deadline = getattr(_current, "deadline", None)
        if deadline is not None and self.sock is not None:
            deadline.guard(self.sock)
        return super().getresponse()  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections honour the sending thread's ``within()`` deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The usual pool manager, making guarded connections."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }


# ---------------------------------------------------------------------------
# Reading what went wrong


def error_causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the errors it wraps (requests and urllib3 nest them in args and .reason)."""
    found: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(found) < 20:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        nested = [*current.args[:1], getattr(current, "reason", None), current.__cause__]
        pending.extend(item for item in nested if isinstance(item, BaseException))
    return found


def os_error_text(exc: BaseException) -> str:
    """A short description of a low-level error, without the URL requests' messages quote."""
    for cause in error_causes(exc):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    return type(exc).__name__


def is_timeout(exc: BaseException) -> bool:
    """Whether a socket timeout is among the causes (requests reports some as ConnectionError)."""
    timeouts = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)
    # urllib3's NewConnectionError (a refused connection, say) is a ConnectTimeoutError too.
    refused = urllib3.exceptions.NewConnectionError
    return any(
        isinstance(cause, timeouts) and not isinstance(cause, refused)
        for cause in error_causes(exc)
    )
