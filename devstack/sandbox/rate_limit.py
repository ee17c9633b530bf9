"""The vendor's rate limit: a rolling window per API key, and storms of nothing but 429."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

RATE_WINDOW_S: Final = 60.0


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int
    storm: bool = False  # refused by a storm, not by the window


class RateLimiter:
    """Rolling 60 s window per API key, like the vendor's 240/min per key [doc].

    `clock` may run `time_scale` times faster than real time (a load test's short "minute");
    Retry-After is always in real seconds: what a client must really wait.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        time_scale: float = 1.0,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._time_scale = time_scale
        self._per_minute = per_minute
        self._windows: dict[str, deque[float]] = {}
        self._storm_until: float | None = None

    @property
    def per_minute(self) -> int:
        return self._per_minute

    def set_limit(self, per_minute: int) -> None:
        # A new limit starts a fresh window, so a test that lowers the limit sees exactly it.
        with self._lock:
            self._per_minute = per_minute
            self._windows.clear()
            self._storm_until = None

    def storm(self, seconds: float) -> None:
        """Nothing but 429 for the next `seconds` (on this clock), whatever the window holds:
        the bursts of refusals the vendor has been seen to answer with."""
        with self._lock:
            self._storm_until = self._clock() + seconds

    def acquire(self, key: str) -> RateDecision:
        # Rejected calls do not take a slot (Laravel's throttle behaves the same way), so a
        # client that backs off as told always gets through.
        now = self._clock()
        with self._lock:
            limit = self._per_minute
            if self._storm_until is not None and now < self._storm_until:
                return RateDecision(False, limit, 0, self._real(self._storm_until - now), True)
            window = self._windows.setdefault(key, deque())
            while window and window[0] <= now - RATE_WINDOW_S:
                window.popleft()
            if len(window) >= limit:
                return RateDecision(False, limit, 0, self._real(window[0] + RATE_WINDOW_S - now))
            window.append(now)
            return RateDecision(True, limit, limit - len(window), 0)

    def _real(self, clock_seconds: float) -> int:
        return max(1, math.ceil(clock_seconds / self._time_scale))
