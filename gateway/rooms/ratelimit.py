"""At most so many events per key in any window of time (a sliding window): joins per client address,
dial-outs per actor and in all, key presses per call. Protocol-free; memory holds only the keys that
were active within the last window.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable


class RateLimit:
    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: dict[Hashable, deque[float]] = {}
        self._swept_at = clock()

    def full(self, key: Hashable) -> bool:
        """Whether `key` has had `limit` events within the window (the next would be one too many)."""
        now = self._clock()
        if now - self._swept_at > self.window_s:
            # Forget keys quiet for a whole window, so the table holds only the last window's.
            self._swept_at = now
            for quiet in [k for k, times in self._events.items() if now - times[-1] >= self.window_s]:
                del self._events[quiet]
        times = self._events.get(key)
        if times is None:
            return False
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return len(times) >= self.limit

    def add(self, key: Hashable) -> None:
        """Counts an event of `key` (call after `full` said no)."""
        self._events.setdefault(key, deque()).append(self._clock())

    def allow(self, key: Hashable) -> bool:
        """Counts the event and says yes, or says no (and counts nothing) when `key` is full."""
        if self.full(key):
            return False
        self.add(key)
        return True
