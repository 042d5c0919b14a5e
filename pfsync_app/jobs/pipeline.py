"""Pieces of a job's pipeline: fetching ahead in a thread, and progress callbacks."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


class Progress:
    """Progress callbacks; the command shows a bar on a terminal or log lines under cron."""

    def stage(self, name: str, total: int | None = None) -> None:
        """A stage (users, listings, images) starts, with its total when known."""

    def total(self, name: str, total: int) -> None:
        """The total of a stage became known or grew."""

    def advance(self, name: str, count: int = 1) -> None:
        """Some items of a stage are done."""

    def close(self) -> None:
        """The run is over."""


_END = object()


class Prefetcher(Iterator[T]):
    """Iterates ``iterable`` in a background thread, ``depth`` items ahead (pipelining).

    The thread starts at once, so fetching overlaps whatever the caller does
    before it takes the first item (pf_sync: the users stage). ``close()`` stops
    it; call it on every way out.
    """

    def __init__(self, iterable: Iterable[T], depth: int = 1) -> None:
        self._items: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._produce, args=(iterable,), name="pfsync-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, entry: tuple[Any, BaseException | None]) -> bool:
        # Polls the stop flag so the thread ends once the consumer is gone, not blocked on a
        # full queue.
        while not self._stop.is_set():
            try:
                self._items.put(entry, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, iterable: Iterable[T]) -> None:
        try:
            for item in iterable:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((None, exc))

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item, exc = self._items.get()
        if exc is not None:
            self.close()
            raise exc
        if item is _END:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop fetching; the next ``next()`` ends the iteration."""
        self._finished = True
        self._stop.set()


def prefetch(iterable: Iterable[T], depth: int = 1) -> Prefetcher[T]:
    """Start iterating ``iterable`` in the background, ``depth`` items ahead."""
    return Prefetcher(iterable, depth)
