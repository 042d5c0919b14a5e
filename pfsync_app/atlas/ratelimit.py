"""A small thread-safe rate limiter that keeps the client under Atlas's published limits."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateLimiter"]

_SLACK = 1e-6


class RateLimiter:
    """Blocking sliding-window limiter: at most ``limit`` acquisitions in any ``period`` seconds.

    A sliding window (rather than a token bucket refilled at an average rate)
    guarantees the cap over *every* window of ``period`` seconds, so however
    the API counts its minute, a full sync never provokes a 429 by itself.
    """

    def __init__(
        self,
        limit: int,
        period: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 request per period, not {limit}")
        if period <= 0:
            raise ValueError(f"rate limit period must be positive, not {period}")
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._stamps: deque[float] = deque()
        # Held while waiting too: waiting threads queue here in turn instead of
        # all waking at once to race for the same freed slot.
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until one more request fits under the limit; return the seconds waited."""
        with self._lock:
            now = self._clock()
            horizon = now - self.period
            while self._stamps and self._stamps[0] <= horizon:
                self._stamps.popleft()
            if len(self._stamps) < self.limit:
                self._stamps.append(now)
                return 0.0
            # Full: wait for the oldest request to leave the window, then take
            # its place. Nobody else can take it meanwhile: the lock is held.
            # The slack keeps float rounding from landing a hair inside the window.
            delay = self._stamps[0] - horizon + _SLACK
            self._sleep(delay)
            self._stamps.popleft()
            self._stamps.append(max(self._clock(), now + delay))
            return delay

    def __repr__(self) -> str:
        return f"RateLimiter(limit={self.limit}, period={self.period:g})"
